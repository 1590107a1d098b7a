from poemgen.cli import main

raise SystemExit(main())
