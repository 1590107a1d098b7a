"""poemgen.distributed on a local Ray (two CPUs) with the tests' tiny models."""

import pytest

ray = pytest.importorskip("ray", reason="the Ray tests need `pip install 'poemgen[ray]'`")

from conftest import make_photo  # noqa: E402
from poemgen.distributed import COLUMNS, PoemWriter  # noqa: E402
from poemgen.pipeline import load  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    # four logical CPUs on the two cores: two actors, and room for the read tasks beside them
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = [make_photo(folder / f"p{i}.jpg", colour=(i * 40, 90, 200 - i * 30)) for i in range(3)]
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder, paths


def test_rows_are_what_write_batch_gives_and_a_bad_photo_is_an_error_row(local_ray, tiny,
                                                                          photos):
    folder, paths = photos
    ds = ray.data.read_binary_files(str(folder), include_paths=True)
    options = dict(seed=3, chars=7, line_candidates=2)
    rows = ds.map_batches(PoemWriter, fn_constructor_kwargs=dict(clip=tiny.clip, poet=tiny.poet,
                                                                 **options),
                          compute=ray.data.ActorPoolStrategy(size=2), batch_size=2).take_all()
    assert len(rows) == 4 and all(set(row) == set(COLUMNS) for row in rows)
    by_name = {row["image"].rsplit("/", 1)[-1]: row for row in rows}
    broken = by_name.pop("broken.jpg")
    assert broken["error"] and "broken.jpg" in broken["error"] and not broken["lines"]
    expected = load(tiny.clip, tiny.poet, "cpu").write_batch([str(p) for p in paths], **options)
    for path, poem in zip(paths, expected):
        row = by_name[path.name]
        assert row["error"] is None and list(row["lines"]) == poem.lines
        assert [k["word"] for k in row["keywords"]] == [k.word for k in poem.keywords]
        assert row["poem"] == poem.text and len(row["sha256"]) == 64


def test_decoded_images_work_too(local_ray, tiny, photos):
    folder, paths = photos
    ds = ray.data.read_images([str(p) for p in paths], include_paths=True)
    rows = ds.map_batches(PoemWriter, fn_constructor_kwargs=dict(clip=tiny.clip, poet=tiny.poet,
                                                                 keywords=["明月", "孤舟"],
                                                                 line_candidates=1),
                          compute=ray.data.ActorPoolStrategy(size=1), batch_size=4).take_all()
    assert len(rows) == 3
    assert all(row["error"] is None and [k["word"] for k in row["keywords"]] == ["明月", "孤舟"]
               for row in rows)


def test_bad_options_fail_before_the_models_load(tiny):
    from poemgen.errors import PoemgenError

    with pytest.raises(PoemgenError, match="topk"):
        PoemWriter(clip="/nowhere", poet="/nowhere", topk=0)
