"""Where a record comes from, as far as its own fields say: its source dataset and its question type.

The data statistics, the probe's vocabulary groups and the Med-R1 converter all need a record's source
dataset. OmniMedVQA and Med-R1 name it only in the image path (``Images/<dataset>/<file>``), and records
converted before ``meta["dataset"]`` was kept have nothing else, so the path is read in one place: three
readings had drifted apart on Windows separators and on which ``Images`` folder counts.
"""

from __future__ import annotations

from anatomy_r1.data.schema import Record

ANATOMY_QUESTION_TYPE = "Anatomy Identification"
"""OmniMedVQA's question type whose answer names the anatomy shown (Med-R1 names its split files by it)."""
IMAGES_FOLDER = "Images"
"""OmniMedVQA's image folder; the folder below it is the source dataset."""


def dataset_from_image(path: str) -> str | None:
    """The ``<dataset>`` of an ``Images/<dataset>/.../<file>`` path; None when the path has no such folder.

    ``\\`` is read as ``/`` (a file converted on Windows keeps its separators). The last ``Images`` folder
    with a dataset folder and a file below it counts, so a copy kept under a folder that happens to be
    called ``Images`` (``/mnt/Images/OmniMedVQA/Images/MIAS/x.png``) still names MIAS; ``Images`` right
    above the file (``Images/MURA/Images/1.png``) names no dataset and the one above it is used.
    """
    parts = [s for s in path.strip().replace("\\", "/").split("/") if s]
    for i in range(len(parts) - 3, -1, -1):
        if parts[i] == IMAGES_FOLDER:
            return parts[i + 1]
    return None


def dataset_of(record: Record) -> str | None:
    """``meta["dataset"]`` when the converter kept it, else the dataset of the first image path naming one."""
    name = record.meta.get("dataset")
    if isinstance(name, str) and name.strip():
        return name.strip()
    for image in record.images:
        found = dataset_from_image(image)
        if found is not None:
            return found
    return None
