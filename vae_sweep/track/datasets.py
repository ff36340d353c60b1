"""The run's data set as an MLflow dataset input: what fills the runs table's Dataset column.

MLflow keeps one dataset per experiment for each (name, digest) and links every run that logs it,
so two runs on the same data show the same entry, and a run on other data (another split seed,
binarization, limit or folder content) a new one. The digest therefore covers everything the
profile and schema show, and the data's contents.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.schema import TensorDatasetSchema
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.types import Schema, TensorSpec

from vae_sweep.names import DATASET_CONTEXT_TAG
from vae_sweep.train.data import DataSplits

SPLITS = ("train", "val", "test")
# A split of up to this many bytes is hashed whole (digits' 1259 training images: 0.3 MB, half a
# millisecond); a larger one by SAMPLED_ROWS rows spread evenly over it, with its row count and
# shape (MNIST-sized data, 188 MB: 3 ms, against 0.1 s on every trial to hash it whole). The rows
# come from the split tensors, so another split seed, binarization or limit gives another digest,
# and so does a changed picture among the sampled rows; one elsewhere in a large split keeps it.
WHOLE_SPLIT_BYTES = 4 * 2**20
SAMPLED_ROWS = 256
DIGEST_LENGTH = 8  # what MLflow's own datasets use


def rows_to_hash(split: torch.Tensor) -> torch.Tensor:
    """The whole split when small, else SAMPLED_ROWS rows spread evenly over it, on the CPU."""
    if split.numel() * split.element_size() <= WHOLE_SPLIT_BYTES:
        return split.detach().cpu().contiguous()
    index = torch.linspace(0, split.shape[0] - 1, SAMPLED_ROWS, device=split.device).round().long()
    return split.detach()[index].cpu().contiguous()


def data_profile(data: DataSplits) -> dict[str, object]:
    """What the MLflow UI shows as the dataset's profile: split sizes, sample shape, binarization."""
    return {
        **{f"{split}_rows": int(getattr(data, split).shape[0]) for split in SPLITS},
        "sample_shape": list(data.sample_shape),
        "binarize": data.binarize.value,
    }


def data_digest(name: str, data: DataSplits) -> str:
    """A stable hash of the data's identity: name, profile and the contents of every split (whole
    or sampled, see WHOLE_SPLIT_BYTES), independent of where the files live."""
    digest = hashlib.sha256(json.dumps({"name": name, **data_profile(data)}, sort_keys=True).encode())
    for split in SPLITS:
        digest.update(memoryview(rows_to_hash(getattr(data, split)).numpy()).cast("B"))
    return digest.hexdigest()[:DIGEST_LENGTH]


def data_schema(data: DataSplits) -> str:
    """The examples as a tensor spec, ``(-1, channels, height, width)`` float32 in [0, 1]."""
    features = Schema([TensorSpec(np.dtype(np.float32), (-1, *data.sample_shape), name="x")])
    return json.dumps(TensorDatasetSchema(features=features).to_dict())


def dataset_input(name: str, data: DataSplits, *, source: str, context: str = "training") -> DatasetInput:
    """The data set ``name`` (the data config's name: digits, mnist, a user's own) as the input
    of a run, for ``MlflowClient.log_inputs``; ``source`` names the spec class that made it."""
    dataset = Dataset(
        name=name,
        digest=data_digest(name, data),
        source_type="code",
        source=CodeDatasetSource(tags={"vae_sweep.data": source}).to_json(),
        schema=data_schema(data),
        profile=json.dumps(data_profile(data)),
    )
    return DatasetInput(dataset, tags=[InputTag(DATASET_CONTEXT_TAG, context)])
