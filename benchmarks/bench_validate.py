"""``xresource validate`` over 1,000 manifests versus ``check-jsonschema`` with the generated schema.

Both run as a CLI process over the same files, as CI would run them; median of
several runs. Target: xresource faster (ratio < 1.0).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._report import Row, print_rows

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / ".data" / "manifests_1000"
BIN = Path(sys.executable).parent

TEMPLATES = [
    "name: db_{i}\ntype: postgresql\ntags: [t{m}]\nconnection_string: postgresql://app:${{env:PW}}@db{m}:5432/app\n"
    "max_pool_size: {p}\n",
    "name: file_{i}\ntype: csv\nfile_path: data/{i}.csv\ndelimiter: ';'\n",
    "name: api_{i}\ntype: rest_api\nendpoint: https://api{m}.example.com/v1\ntimeout: 5\n"
    "auth_params:\n  bearer_token: ${{env:TOKEN}}\n",
    "name: topic_{i}\ntype: kafka\nbootstrap_servers: k{m}:9092\nconsumer_group: g{m}\n",
    "name: feed_{i}\ntype: mqtt\nconnection_string: mqtt://broker{m}:1883\nqos: 1\n",
]


def make_manifests(count: int = 1000) -> Path:
    if DATA.exists() and len(list(DATA.glob("*.yaml"))) == count:
        return DATA
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    for i in range(count):
        text = TEMPLATES[i % len(TEMPLATES)].format(i=i, m=i % 7, p=5 + i % 20)
        (DATA / f"m{i:05d}.yaml").write_text(text)
    return DATA


def _time(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return statistics.median(times)


def run(quick: bool = False) -> list[Row]:
    folder = make_manifests()
    files = sorted(str(p) for p in folder.glob("*.yaml"))
    repeat = 3 if quick else 5
    ours = _time([str(BIN / "xresource"), "validate", str(folder)], repeat)
    theirs = _time(
        [str(BIN / "check-jsonschema"), "--schemafile", str(ROOT / "schemas" / "resource.schema.json"), *files],
        repeat,
    )
    ratio = ours / theirs
    return [
        Row(
            figure="validate 1,000 manifests (CLI, wall time)",
            value=ours,
            baseline=theirs,
            ratio=ratio,
            unit="s",
            target="< 1.0x",
            ok=ratio < 1.0,
            note="baseline: check-jsonschema with schemas/resource.schema.json over the same files",
        )
    ]


if __name__ == "__main__":
    print_rows(run(quick="--quick" in sys.argv))
