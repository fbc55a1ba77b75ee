r"""``iidfusion extract``: frozen encoders over a raw data set, features cached for ``fit`` / ``compare``.

The data and encoder flags (:func:`add_raw_data_arguments`, :func:`add_encoder_arguments`)
and their readers are shared with ``iidfusion finetune`` (:mod:`iidfusion.cli.finetune`),
which trains a method end to end on the same raw inputs.

Example (MVSA-Single in MMBT's format, BERT and ResNet-152 from local files)::

    iidfusion extract --data-format mmbt --root data/MVSA_Single \
        --text-encoder models/bert-base-uncased --image-encoder resnet152 \
        --weights models/resnet152-394f9c45.pth --out features/mvsa_single --noise 0,5,10
    iidfusion compare --data features/mvsa_single --noise 0,5,10 ...   # each level on its noisy test split

The same with the pretrained encoders that come inside packages (no weight files)::

    iidfusion extract --data-format mmbt --root ../shared/data/mvsa_single --text-encoder minilm \
        --image-encoder efficientnet-lite0 --out features/mvsa_single --noise 0,5,10

HFM as its authors distribute it (tweets and image-attribute words, both texts)::

    iidfusion extract --data-format hfm --root ../shared/data/hfm --text-encoder minilm --out features/hfm

The folder receives ``features.npz`` (clean), ``features_noise<eps>.npz`` (noisy test split)
and ``manifest.json``; see :mod:`iidfusion.data.raw.feature_cache`. A second run with the same
inputs and settings reuses the cache; a changed input file or setting rebuilds it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iidfusion.cli.options import bounded_int, refuse_renamed
from iidfusion.core.config import MAX_BATCH, MAX_NOISE_LEVEL, MAX_PROCESSES, SEED_LIMIT

if TYPE_CHECKING:
    from iidfusion.data.raw.families import RawDataOptions

# Bounds of the size flags (the configuration's are in iidfusion.core.config).
MAX_TEXT_LENGTH = 2**16
MAX_REGIONS = 64
MAX_IMAGE_SIZE = 2**14

# Spelled out so that building the parser imports no torch (iidfusion.data.raw.families.RAW_FORMATS
# and iidfusion.data.raw.input_noise.PIXEL_NOISE are the sources; a test checks they agree).
RAW_FORMATS: tuple[str, ...] = ("mmbt", "json-array", "csv", "rgbd", "hfm")
NOISE_KINDS: tuple[str, ...] = ("gaussian", "salt-and-pepper")


def add_raw_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that locate and read a raw data set (shared with ``finetune``)."""
    group = parser.add_argument_group("data options")
    group.add_argument("--data-format", required=True, choices=RAW_FORMATS, help="layout of the raw data set")
    group.add_argument(
        "--root",
        required=True,
        type=Path,
        help="folder of the split files (mmbt, json-array, csv; hfm: train.txt, valid2.txt, test2.txt, extract_all) or "
        "of train/ and test/ (rgbd)",
    )
    group.add_argument(
        "--csv-columns",
        default="",
        help="csv: the columns of image path, text, label and (optional) id, e.g. 'image=path,text=caption,label=y' "
        "(default image, text, label, "
        "id)",
    )
    group.add_argument(
        "--image-dir",
        type=Path,
        default=None,
        help="json-array: folder of <id>.jpg (default: dataset_image/ in or above --root)",
    )
    group.add_argument("--name", default=None, help="data set name in records (default: the folder name)")
    group.add_argument(
        "--val-fraction", type=float, default=0.1, help="rgbd: validation share carved from train (default 0.1)"
    )
    group.add_argument(
        "--split-seed",
        type=bounded_int(0, SEED_LIMIT),
        default=0,
        help="rgbd: seed of that carve, fixed across training seeds (default 0)",
    )
    group.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="a sample with an empty text, a bad image or an unknown label: stop (raise) or drop it and log (skip)",
    )
    group.add_argument(
        "--no-verify-images",
        action="store_true",
        help="do not decode every image up front (faster; a bad image then fails when read)",
    )
    group.add_argument(
        "--missing-attributes",
        choices=("empty", "skip", "raise"),
        default="empty",
        help="hfm: a tweet without image-attribute words gets an empty attribute text (default), is dropped and logged "
        "(skip), or stops the loading "
        "(raise)",
    )
    group.add_argument(
        "--no-keyword-filter",
        action="store_true",
        help="hfm: keep the tweets HFM's preprocessing drops (those holding 'sarcasm', '<url>', ...)",
    )


# Encoder flags: dest -> EncoderOptions field (flags default to None so a config file's value shows through).
ENCODER_FLAGS: dict[str, str] = {
    "text_encoder": "text",
    "max_length": "max_length",
    "image_encoder": "image_arch",
    "weights": "image_weights",
    "regions": "regions",
    "depth_encoder": "depth_arch",
    "depth_weights": "depth_weights",
}


def add_encoder_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that choose the encoders and the image size (shared with ``finetune``)."""
    group = parser.add_argument_group("encoder options")
    group.add_argument(
        "--text-encoder",
        default=None,
        help="local Hugging Face model folder, a Hugging Face model id already in the local cache (read offline), "
        "'minilm' (bundled all-MiniLM-L6-v2) or 'random' (default: random, with a "
        "warning)",
    )
    group.add_argument(
        "--max-length",
        type=bounded_int(2, MAX_TEXT_LENGTH),
        default=None,
        help="text tokens per sample (default 512, as the originals)",
    )
    group.add_argument(
        "--image-encoder",
        default=None,
        help="image / RGB encoder: a built-in ResNet (resnet18 ... resnet152), efficientnet-lite0 (ImageNet weights "
        "from a package, optional extra 'vision-pretrained'), timm:NAME or torchvision:NAME (optional extra "
        "'vision') (default vision-language: efficientnet-lite0, or resnet152 with --weights; RGB-D: "
        "resnet18)",
    )
    group.add_argument(
        "--weights",
        default=None,
        help="local weight file (.pth, .pt or .safetensors state dict) of the image / RGB encoder (default: random, "
        "with a warning)",
    )
    group.add_argument(
        "--regions",
        type=bounded_int(1, MAX_REGIONS),
        default=None,
        help="pooled horizontal regions of the image feature map (default: 3 vision-language, 1 RGB-D)",
    )
    group.add_argument(
        "--depth-encoder",
        default=None,
        help="rgbd: encoder of the depth modality, as --image-encoder (default resnet18)",
    )
    group.add_argument("--depth-weights", default=None, help="rgbd: local torchvision weight file of the depth encoder")
    group.add_argument(
        "--image-size",
        type=bounded_int(1, MAX_IMAGE_SIZE),
        default=None,
        help="image crop size (default 224, the originals; smaller for quick CPU runs)",
    )


def raw_options(args: argparse.Namespace) -> RawDataOptions:
    from iidfusion.data.raw.families import RawDataOptions
    from iidfusion.data.raw.vision_language import CsvColumns

    return RawDataOptions(
        data_format=args.data_format,
        root=args.root,
        image_dir=args.image_dir,
        name=args.name,
        val_fraction=args.val_fraction,
        seed=args.split_seed,
        on_error=args.on_error,
        verify_images=not args.no_verify_images,
        missing_attributes=args.missing_attributes,
        keyword_filter=not args.no_keyword_filter,
        columns=CsvColumns.parse(args.csv_columns),
    )


def encoder_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The encoder options given as flags, by :class:`~iidfusion.data.raw.families.EncoderOptions` field."""
    return {name: getattr(args, dest) for dest, name in ENCODER_FLAGS.items() if getattr(args, dest) is not None}


def parse_levels(text: str) -> tuple[float, ...]:
    """``"0,5,10"`` -> (0.0, 5.0, 10.0); a bad or negative level is a ValueError."""
    try:
        levels = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"--noise must be comma-separated numbers, got {text!r}") from error
    if not levels or any(not 0 <= level <= MAX_NOISE_LEVEL for level in levels):
        raise ValueError(f"--noise levels must be >= 0, at most {MAX_NOISE_LEVEL:g}, got {text!r}")
    return levels


def require_text_packages(data_format: str, text_encoder: str | None = None) -> None:
    """Import transformers up front for the vision-language formats (their text encoder needs
    it), so a missing extra is said before any data is read (one line: `pip install 'iidfusion[vl]'`);
    a ``text_encoder`` folder that holds code is refused then too.
    """
    if data_format != "rgbd":
        import transformers  # noqa: F401
    if text_encoder is not None and Path(text_encoder).is_dir():
        from iidfusion.encoders.text import refuse_custom_code

        refuse_custom_code(text_encoder)


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def single_device(accelerator: str, devices: str) -> str:
    """The torch device of ``--accelerator`` and ``--devices`` for a command that runs on one device
    (``extract``, ``bench train``), named as the training commands name theirs (Lightning's):
    ``--devices`` auto or 1 is the first device, ``K,`` (a list of one id) device K. Checked before
    any data is read: a ValueError naming the flags.
    """
    import torch

    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    kind = "cuda" if accelerator == "gpu" else accelerator
    text = devices.strip().strip("[]")
    if text in ("auto", "1"):
        index = None
    elif text.endswith(",") and text[:-1].strip().isdigit():
        index = int(text[:-1])
    else:
        raise ValueError(
            f"--devices {devices}: this command runs on one device: auto or 1 (the first), or 'K,' for device K"
        )
    if kind == "cpu":
        return "cpu"
    available = torch.cuda.device_count() if kind == "cuda" and torch.cuda.is_available() else 0
    if kind == "mps":
        available = int(torch.backends.mps.is_available())
    if available == 0:
        raise ValueError(
            f"--accelerator {accelerator}: torch sees no {kind.upper()} device on this machine; use --accelerator cpu"
        )
    if index is not None and index >= available:
        raise ValueError(f"--devices {devices}: this machine has {available} {kind} device(s), numbered from 0")
    return kind if index is None else f"{kind}:{index}"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract",
        help="run frozen encoders over a raw vision-language, RGB-D or text data set and cache the features",
        description="Extract features with frozen encoders (no download: weights and data come from local paths) and "
        "cache them as multi-view .npz files that `fit` and `compare` read; noisy test variants too.",
    )
    add_raw_data_arguments(parser)
    add_encoder_arguments(parser)
    group = parser.add_argument_group("extraction options")
    group.add_argument("--out", required=True, type=Path, help="cache folder")
    group.add_argument(
        "--seed",
        type=bounded_int(0, SEED_LIMIT),
        default=0,
        help="seed of random encoder initialisations and of the noise (default 0)",
    )
    group.add_argument(
        "--noise",
        default="0",
        help="noise levels eps of the test split, comma-separated (default 0; the paper: 0,5,10)",
    )
    group.add_argument("--noise-kind", choices=NOISE_KINDS, default="gaussian", help="pixel noise (default gaussian)")
    group.add_argument(
        "--batch-size", type=bounded_int(1, MAX_BATCH), default=32, help="extraction batch size (default 32)"
    )
    group.add_argument(
        "--accelerator",
        choices=ACCELERATORS,
        default="auto",
        help="the device kind, as the training commands' (default: auto, cuda when available, else cpu)",
    )
    group.add_argument(
        "--devices",
        default="auto",
        help="which one: auto or 1 (the first), or 'K,' for device K, as Lightning reads it (default: auto)",
    )
    group.add_argument(
        "--num-workers", type=bounded_int(0, MAX_PROCESSES), default=0, help="data-loader workers (default 0)"
    )
    group.add_argument(
        "--hash-content", action="store_true", help="checksum image bytes, not sizes and modification times"
    )
    group.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="extract again and replace the cache even if it is current (default: reuse a current cache)",
    )
    group.add_argument(
        "--progress-bar",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a progress bar on stderr (default: shown)",
    )
    refuse_renamed(parser, {"--force": "--overwrite", "--device": "--accelerator and --devices"})
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from iidfusion.core.progress import write_line
    from iidfusion.data.raw.extraction import ExtractionOptions, extract_to_cache
    from iidfusion.data.raw.families import EncoderOptions
    from iidfusion.engine.outputs import check_output_folder, run_folder

    levels = parse_levels(args.noise)
    require_text_packages(args.data_format, args.text_encoder)
    device = single_device(args.accelerator, args.devices)
    check_output_folder(args.out, resume=True)  # a cache of ours (reused or rebuilt), or a new or empty folder
    options = ExtractionOptions(
        levels=levels,
        noise_kind=args.noise_kind,
        seed=args.seed,
        image_size=224 if args.image_size is None else args.image_size,
        batch_size=args.batch_size,
        device=device,
        num_workers=args.num_workers,
        hash_content=args.hash_content,
        force=args.overwrite,
    )
    with run_folder(args.out):
        extracted = extract_to_cache(
            raw_options(args),
            EncoderOptions(**encoder_flags(args)),
            options,
            args.out,
            log=write_line,
            progress=args.progress_bar,
        )
    raw = extracted.raw
    skipped = sum(len(items) for items in raw.skipped.values())
    dims = ", ".join(f"{m} {getattr(e, 'output_dim', '?')}" for m, e in extracted.encoders.items())
    print(f"{raw.name}: {raw.num_classes} classes, features {dims}; skipped {skipped} samples")
    for note in raw.notes:
        print(f"  {note}")
    for level, path in sorted(extracted.files.items()):
        print(f"  noise {level:g}: {path}")
    return 0
