import pytest
from PIL import Image

from vlmtrust.data.datasets import _hf_image, iter_dataset


def test_path_only_image_cells_are_refused(tmp_path):
    outside = tmp_path / "secret.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(outside)
    with pytest.raises(ValueError, match="external file"):
        _hf_image({"bytes": None, "path": str(outside)}, "ds[0].image")


def test_save_to_disk_embeds_images_so_they_load(tmp_path):
    import datasets

    src = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(src)
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": None, "path": str(src)}], "label": ["a"]},
        features=datasets.Features(
            {"image": datasets.Image(decode=False), "label": datasets.Value("string")}
        ),
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    src.unlink()  # the saved copy must not depend on the original file
    (item,) = list(iter_dataset(f"hf-disk:{tmp_path / 'ds'}"))
    assert item.images[0].load().getpixel((0, 0)) == (1, 2, 3)
