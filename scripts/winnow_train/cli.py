"""The command-line pieces that pretrain.py, train.py and evaluate.py share:
the parser built from a script's docstring, where the data and the runs
live, the encoder's shape, and the task/variant/seed selection."""

import argparse
import os

from . import mlm, paths, tasks


def parser(doc: str) -> argparse.ArgumentParser:
    """First paragraph of the docstring as description, the rest as epilog."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=doc.split("\n\n", 1)[1])


def add_data_args(ap: argparse.ArgumentParser, vocab: bool = True) -> None:
    ap.add_argument("--data-root", metavar="DIR",
                    help="prepared data (default ${WINNOW_CACHE:-~/.cache/winnow}/data)")
    ap.add_argument("--splits-dir", default=paths.SPLITS, metavar="DIR",
                    help="split manifests (default scripts/splits)")
    if vocab:
        ap.add_argument("--vocab", default=paths.VOCAB, metavar="FILE",
                        help="vocab.txt (default model/weights/vocab.txt)")


def add_shape_args(ap: argparse.ArgumentParser, when: str = "") -> None:
    """--layers ... --max-position, defaulting to the shipped shape; `when`
    prefixes the help ("with --encoder none: ")."""
    d = mlm.Shape()
    ap.add_argument("--layers", type=int, default=d.layers,
                    help=f"{when}encoder layers (default {d.layers})")
    ap.add_argument("--hidden", type=int, default=d.hidden,
                    help=f"{when}hidden size (default {d.hidden})")
    ap.add_argument("--heads", type=int, default=d.heads,
                    help=f"{when}attention heads (default {d.heads})")
    ap.add_argument("--intermediate", type=int, default=d.intermediate,
                    help=f"{when}feed-forward size (default {d.intermediate})")
    ap.add_argument("--max-position", type=int, default=d.max_position,
                    help=f"{when}position embeddings = longest window (default {d.max_position})")


def parse_selection(ap: argparse.ArgumentParser, args) -> None:
    """args.task/variant/seed (comma-separated, 'all') -> args.tasks,
    args.variants, args.seeds; a usage error names what is unknown."""
    try:
        args.tasks = tasks.parse_list(args.task, tasks.TASKS, "task")
        args.variants = tasks.parse_list(args.variant, tasks.VARIANTS, "variant")
        args.seeds = [int(s) for s in args.seed.split(",") if s.strip()]
    except ValueError as e:
        ap.error(str(e))


def default_dirs(args) -> None:
    """args.runs and args.data_root default into the cache."""
    args.runs = getattr(args, "runs", None) or os.path.join(paths.cache_root(), "runs")
    args.data_root = args.data_root or os.path.join(paths.cache_root(), "data")
