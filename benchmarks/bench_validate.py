"""``xresource validate`` versus ``check-jsonschema`` with the generated schema, as CI and pre-commit run them.

Four rows, each a CLI process over the same files for both tools:

- one manifest carrying the schema modeline (``xresource init`` writes it): the
  cold start a developer pays on every commit; target at most half of
  check-jsonschema's wall time;
- the floor: a script that only imports pydantic and PyYAML and validates the
  same file with one model (``_validate_floor.py``), which says what pydantic
  alone costs against check-jsonschema, and so how close to it ours is;
- a pre-commit-style run over five changed manifests (the hook passes the
  changed files); same target;
- 1,000 manifests in a folder; target faster than check-jsonschema.

Runs alternate (A, B, B, A) so that a slow spell on a shared machine hits both
tools; figures are medians. Each process's CPU time (user + system) is measured
too: other processes competing for the cores move it much less than wall time.
Bytecode caching is left on (``PYTHONDONTWRITEBYTECODE`` is dropped from the
subprocesses' environment, which sets it on the project's machines), as in a
normal install, and each tool runs once untimed first so its ``.pyc`` exist.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._report import Row, print_rows

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / ".data"
BIN = Path(sys.executable).parent
UNION_SCHEMA = ROOT / "schemas" / "resource.schema.json"

TEMPLATES = [
    "name: db_{i}\ntype: postgresql\ntags: [t{m}]\nconnection_string: postgresql://app:${{env:PW}}@db{m}:5432/app\n"
    "max_pool_size: {p}\n",
    "name: file_{i}\ntype: csv\nfile_path: data/{i}.csv\ndelimiter: ';'\n",
    "name: api_{i}\ntype: rest_api\nendpoint: https://api{m}.example.com/v1\ntimeout: 5\n"
    "auth_params:\n  bearer_token: ${{env:TOKEN}}\n",
    "name: topic_{i}\ntype: kafka\nbootstrap_servers: k{m}:9092\nconsumer_group: g{m}\n",
    "name: feed_{i}\ntype: mqtt\nconnection_string: mqtt://broker{m}:1883\nqos: 1\n",
]


def make_manifests(folder: Path, count: int, *, modeline: bool = False) -> list[Path]:
    """``count`` manifests of mixed types in ``folder`` (kept between runs)."""
    files = [folder / f"m{i:05d}.yaml" for i in range(count)]
    if folder.exists() and sorted(folder.glob("*.yaml")) == files:
        return files
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    header = f"# yaml-language-server: $schema={os.path.relpath(UNION_SCHEMA, folder)}\n" if modeline else ""
    for i, file in enumerate(files):
        file.write_text(header + TEMPLATES[i % len(TEMPLATES)].format(i=i, m=i % 7, p=5 + i % 20))
    return files


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its .pyc; measure that
    return env


def _run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def compare(ours: list[str], theirs: list[str], rounds: int) -> dict[str, float]:
    """Median wall and CPU time of both commands, run in ABBA order ``rounds`` times."""
    env = _environment()
    _run_once(ours, env)
    _run_once(theirs, env)
    times: dict[str, list[float]] = {"ours": [], "theirs": [], "ours_cpu": [], "theirs_cpu": []}
    for _ in range(rounds):
        for who in ("ours", "theirs", "theirs", "ours"):
            wall, cpu = _run_once(ours if who == "ours" else theirs, env)
            times[who].append(wall)
            times[f"{who}_cpu"].append(cpu)
    return {key: statistics.median(values) for key, values in times.items()}


def _row(figure: str, medians: dict[str, float], target: float | None, note: str) -> Row:
    """A row against check-jsonschema; ``target`` None: reported, not judged (the floor)."""
    ratio = medians["ours"] / medians["theirs"]
    cpu_ratio = medians["ours_cpu"] / medians["theirs_cpu"]
    return Row(
        figure=figure,
        value=medians["ours"],
        baseline=medians["theirs"],
        ratio=ratio,
        unit="s",
        target=f"<= {target}x" if target is not None else "report",
        ok=ratio <= target if target is not None else None,
        note=f"{note}; CPU time {medians['ours_cpu']:.3f} s vs {medians['theirs_cpu']:.3f} s ({cpu_ratio:.3f}x)",
    )


def _check_jsonschema(files: list[Path]) -> list[str]:
    return [str(BIN / "check-jsonschema"), "--schemafile", str(UNION_SCHEMA), *map(str, files)]


def _floor(files: list[Path]) -> list[str]:
    return [sys.executable, str(Path(__file__).parent / "_validate_floor.py"), str(files[0])]


def run(quick: bool = False) -> list[Row]:
    xresource = str(BIN / "xresource")
    rounds = 3 if quick else 8
    one = make_manifests(DATA / "one_with_modeline", 1, modeline=True)
    five = make_manifests(DATA / "five_with_modeline", 5, modeline=True)
    folder = DATA / "manifests_1000"
    thousand = make_manifests(folder, 1000)
    baseline = "baseline: check-jsonschema --schemafile schemas/resource.schema.json, same files"
    return [
        _row(
            "validate 1 manifest with modeline (CLI cold start)",
            compare([xresource, "validate", str(one[0])], _check_jsonschema(one), rounds),
            0.5,
            f"{baseline}; ABBA x{rounds}, medians",
        ),
        _row(
            "floor: python + pydantic + PyYAML + one model, 1 manifest",
            compare(_floor(one), _check_jsonschema(one), rounds),
            None,
            "what any pydantic-based validate costs (benchmarks/_validate_floor.py, no xresource code); "
            f"{baseline}; ABBA x{rounds}, medians",
        ),
        _row(
            "validate 5 changed manifests (pre-commit style)",
            compare([xresource, "validate", *map(str, five)], _check_jsonschema(five), rounds),
            0.5,
            f"{baseline}; file names passed as the hook passes them; ABBA x{rounds}, medians",
        ),
        _row(
            "validate 1,000 manifests (CLI, wall time)",
            compare([xresource, "validate", str(folder)], _check_jsonschema(thousand), max(2, rounds // 3)),
            1.0,
            baseline,
        ),
    ]


if __name__ == "__main__":
    print_rows(run(quick="--quick" in sys.argv))
