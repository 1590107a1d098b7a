"""The curated imagery vocabulary; installed inside the package as `poemgen.vocabulary`."""
