"""HFM's Twitter sarcasm data set as distributed: tweet texts and image-attribute words.

Cai et al., "Multi-Modal Sarcasm Detection in Twitter with Hierarchical Fusion Model" (ACL
2019), files of their repository ``data-of-multimodal-sarcasm-detection``:

* ``train.txt``, ``valid2.txt``, ``test2.txt``: one Python literal a line, a list
  ``[tweet id, text, label]`` in train and ``[tweet id, text, hashtag label, annotator
  label]`` in validation and test (the first label is the hashtag annotation of the original
  post, the second a human annotator's; HFM's code, and so the published splits, use the
  LAST field, which gives the paper's 959 / 1,451 and 959 / 1,450 sarcastic / other tweets);
* ``extract_all``: one list a line, ``[image id, five attribute words]``: the attributes HFM
  predicted from each tweet's image (the image id is the tweet id).

Lines are parsed with :func:`ast.literal_eval`, which reads literals and never runs code; a
line that is not a list of the expected fields is an error naming ``file:line``.

Two modalities, both texts (family ``texts``): ``text`` (the tweet) and ``attributes`` (the
five words joined by spaces). The images themselves are not part of these files.

Protocol choices, recorded in :attr:`RawSplits.notes`:

* HFM's preprocessing drops every tweet holding one of :data:`HFM_EXCLUDED_WORDS` as a
  space-separated token (words that give the label away, and ``<url>``); with it the splits
  have HFM's 19,816 / 2,410 / 2,409 tweets (``keyword_filter=False`` keeps all 29,040
  training tweets; the distributed validation and test files hold none of these words);
* a tweet without attributes gets an empty attribute text (``missing_attributes="empty"``,
  encoded like any text: the encoder's features of an empty input), or is dropped
  (``"skip"``, recorded with the skipped samples) or stops the loading (``"raise"``).
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iidfusion.core.files import read_utf8_lines
from iidfusion.data.raw.input_noise import InputNoise
from iidfusion.data.raw.vision_language import SPLITS, RawDataset, RawSample, RawSplits, check_splits
from iidfusion.encoders.text import TextTokenizer

logger = logging.getLogger(__name__)

HFM_MODALITIES: tuple[str, ...] = ("text", "attributes")
HFM_SPLIT_FILES: dict[str, str] = {"train": "train.txt", "val": "valid2.txt", "test": "test2.txt"}
HFM_ATTRIBUTES_FILE = "extract_all"
# Tokens whose tweets HFM's loader (codes/loadData.py) leaves out of every split.
HFM_EXCLUDED_WORDS: frozenset[str] = frozenset(
    {"sarcasm", "sarcastic", "reposting", "<url>", "joke", "humour", "humor", "jokes", "irony", "ironic", "exgag"}
)
MISSING_ATTRIBUTES: tuple[str, ...] = ("empty", "skip", "raise")


def read_literal_lines(path: str | Path) -> list[tuple[int, list[Any]]]:
    """``(line number, list)`` for each non-blank line of a file of Python list literals.

    :func:`ast.literal_eval` reads numbers, strings, lists and the like, and nothing that runs
    code; CRLF and LF endings alike. A line that is no literal, or not a list, is a ValueError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HFM file not found: {path}")
    rows = []
    for number, line in enumerate(read_utf8_lines(path), start=1):
        if not line.strip():
            continue
        try:
            value = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
            raise ValueError(
                f"{path}:{number}: not a Python literal ({type(error).__name__}): {line.strip()[:80]!r}"
            ) from None
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}:{number}: expected a list, got {type(value).__name__}")
        rows.append((number, list(value)))
    return rows


def read_attributes(path: str | Path) -> dict[str, str]:
    """``{image id: "w1 w2 w3 w4 w5"}`` from ``extract_all``; an id listed twice with other words is an error."""
    attributes: dict[str, str] = {}
    for number, row in read_literal_lines(path):
        if len(row) < 2 or not all(isinstance(field, (str, int)) and not isinstance(field, bool) for field in row):
            raise ValueError(f"{path}:{number}: expected [image id, attribute words...], got {row!r:.80}")
        key, words = str(row[0]), " ".join(str(word) for word in row[1:])
        if attributes.get(key, words) != words:
            raise ValueError(f"{path}:{number}: image {key!r} is listed twice with different attributes")
        attributes[key] = words
    return attributes


def read_tweets(path: str | Path, split: str) -> list[tuple[int, str, str, int]]:
    """``(line, tweet id, text, label)`` of one split file; the label is the LAST field."""
    fields = 3 if split == "train" else 4
    tweets = []
    for number, row in read_literal_lines(path):
        if len(row) != fields:
            raise ValueError(f"{path}:{number}: expected {fields} fields ({_layout(split)}), got {len(row)}")
        tweet_id, text, label = row[0], row[1], row[-1]
        if not isinstance(tweet_id, (str, int)) or isinstance(tweet_id, bool) or not isinstance(text, str):
            raise ValueError(f"{path}:{number}: expected [tweet id, text, ...], got {row!r:.80}")
        if label not in (0, 1) or isinstance(label, bool):
            raise ValueError(f"{path}:{number}: label {label!r} is not 0 or 1")
        tweets.append((number, str(tweet_id), text, int(label)))
    return tweets


def _layout(split: str) -> str:
    return "tweet id, text, label" if split == "train" else "tweet id, text, hashtag label, annotator label"


def load_hfm(
    root: str | Path,
    *,
    missing_attributes: str = "empty",
    keyword_filter: bool = True,
    on_error: str = "raise",
    name: str | None = None,
) -> RawSplits:
    """The train / val / test tweets of HFM in ``root``, each with its attribute words (module docstring).

    ``on_error`` ("raise" or "skip") applies to an empty tweet text, as for the other raw
    loaders; a tweet id listed twice is always an error.
    """
    root = Path(root)
    if missing_attributes not in MISSING_ATTRIBUTES:
        raise ValueError(
            f"unknown missing_attributes {missing_attributes!r}; expected one of {list(MISSING_ATTRIBUTES)}"
        )
    if not root.is_dir():
        raise FileNotFoundError(f"HFM folder not found: {root}")
    attributes = read_attributes(root / HFM_ATTRIBUTES_FILE)
    seen: dict[str, str] = {}
    parts: dict[str, list[RawSample]] = {}
    dropped: dict[str, list[tuple[str, str]]] = {}
    filtered: dict[str, int] = {}
    without: dict[str, int] = {}
    for split in SPLITS:
        path = root / HFM_SPLIT_FILES[split]
        parts[split], dropped[split], filtered[split], without[split] = [], [], 0, 0
        for number, tweet_id, text, label in read_tweets(path, split):
            if tweet_id in seen:
                raise ValueError(f"{path}:{number}: tweet {tweet_id!r} is already listed in {seen[tweet_id]}")
            seen[tweet_id] = path.name
            if keyword_filter and HFM_EXCLUDED_WORDS.intersection(text.split()):
                filtered[split] += 1
                continue
            words = attributes.get(tweet_id)
            if words is None:
                without[split] += 1
                if missing_attributes == "raise":
                    raise ValueError(
                        f"{path}:{number}: tweet {tweet_id!r} has no attributes in {HFM_ATTRIBUTES_FILE} "
                        "(missing_attributes='empty' encodes an empty attribute text, 'skip' drops the tweet)"
                    )
                if missing_attributes == "skip":
                    dropped[split].append((tweet_id, f"no image attributes in {HFM_ATTRIBUTES_FILE}"))
                    continue
                words = ""
            parts[split].append(RawSample(tweet_id, label, None, texts={"text": text, "attributes": words}))
    raw = check_splits(
        name or root.resolve().name, "texts", parts, on_error=on_error, verify_images=False, extra_check=_empty_tweet
    )
    for split, items in dropped.items():
        if items:
            raw.skipped[split] = items + raw.skipped.get(split, [])
    raw.notes.extend(_notes(filtered, without, missing_attributes, keyword_filter))
    for note in raw.notes:
        logger.info("%s: %s", raw.name, note)
    return raw


def _notes(filtered: dict[str, int], without: dict[str, int], missing: str, keyword_filter: bool) -> list[str]:
    counts = ", ".join(f"{split} {without[split]}" for split in SPLITS)
    handled = {
        "empty": "their attribute text is empty",
        "skip": "dropped (listed as skipped)",
        "raise": "none allowed",
    }[missing]
    notes = [
        "validation and test labels: the last field (the human annotator's), as HFM's code",
        f"tweets without image attributes: {counts}; {handled}",
    ]
    if keyword_filter:
        removed = ", ".join(f"{split} {filtered[split]}" for split in SPLITS)
        notes.append(f"HFM's keyword filter dropped tweets holding {sorted(HFM_EXCLUDED_WORDS)}: {removed}")
    else:
        notes.append("HFM's keyword filter is off: every tweet is kept")
    return notes


def _empty_tweet(sample: RawSample) -> str | None:
    return "empty text" if not sample.texts.get("text", "").strip() else None


class TextsDataset(RawDataset):
    """Samples whose every modality is a text: ``{modality: {"input_ids", "attention_mask"}}``.

    ``noise`` blanks words of each modality with its own coin (:mod:`iidfusion.data.raw.input_noise`).
    """

    def __init__(
        self,
        samples: Sequence[RawSample],
        class_names: Sequence[str],
        tokenizer: TextTokenizer,
        modalities: Sequence[str] = HFM_MODALITIES,
        *,
        noise: InputNoise | None = None,
    ) -> None:
        super().__init__(samples, class_names, noise)
        missing = sorted({m for s in self.samples for m in modalities if m not in s.texts})
        if missing:
            raise ValueError(f"samples lack the text modalities {missing}")
        self.tokenizer = tokenizer
        self.modalities = tuple(modalities)

    def inputs(self, index: int) -> dict[str, Any]:
        texts = self.samples[index].texts
        if self.noise is None:
            return {m: self.tokenizer(texts[m]) for m in self.modalities}
        return {m: self.tokenizer(self.noise.text(texts[m], index, m)) for m in self.modalities}
