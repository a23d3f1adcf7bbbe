"""One delivery being written: output folder, seeded randomness, encoding of
headers into files, and the ground truth of everything written."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import ids
from .sites import Site
from .truth import Record, Truth
from .writer import Encoded, file_meta, part10


class Delivery:
    def __init__(self, out: str | Path, shape: str, seed: int, scale: int) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.shape = shape
        self.seed = int(seed)
        self.scale = int(scale)
        self.truth = Truth()
        self.sources_used: dict[str, str] = {}  # source label -> first path using it

    def rng(self, *keys) -> np.random.Generator:
        return ids.rng(self.seed, self.shape, *keys)

    def uid(self, root: str, *keys) -> str:
        return ids.make_uid(root, self.seed, self.shape, *keys)

    def encode(self, header: dict, ts: str, site: Site, *, meta_overrides: dict | None = None,
               undefined_sequences: bool = False, group_length: bool = True) -> Encoded:
        meta = file_meta(header, ts, site.implementation_uid, site.implementation_name,
                         overrides=meta_overrides)
        return part10(header, ts, meta, undefined_sequences=undefined_sequences,
                      group_length=group_length)

    def put(self, relpath: str, data: bytes, record: Record) -> Record:
        """Write `data` at `relpath` and record its truth."""
        path = self.out / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        record.path = relpath
        record.size_bytes = len(data)
        return self.truth.add(record)

    def exists(self, relpath: str) -> bool:
        return relpath in self.truth.records


def record_from(header: dict, *, site: str, patient: str, true_modality: str,
                true_region: str, source: str, **fields) -> Record:
    """A truth record with the identifying columns taken from `header`."""
    body = header.get("BodyPartExamined", "")
    return Record(path="", site=site, patient=patient,
                  study_uid=str(header.get("StudyInstanceUID", "")),
                  series_uid=str(header.get("SeriesInstanceUID", "")),
                  sop_instance_uid=str(header.get("SOPInstanceUID", "")),
                  modality=str(header.get("Modality", "")),
                  body_part=str(body if isinstance(body, str) else getattr(body, "value", "")),
                  true_modality=true_modality, true_region=true_region, source=source,
                  **fields)
