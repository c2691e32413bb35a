"""The documentation is executed: every sample in docs/ runs, validates or parses, and the site builds.

Each page gets a sandbox folder (with the generated ``schemas/`` at its root) and
its fenced blocks are handled in order:

- a block whose ``title`` is a relative path is written there first, so a page can
  show files (manifests, data) and then code that uses them;
- ``python`` blocks run (in a fresh namespace, in the sandbox); ``sh`` blocks run
  (``xresource`` command lines in-process, anything else with bash);
- a ``text`` block titled ``Output`` must equal what the block before it printed;
- ``yaml``/``toml`` manifests must pass ``xresource validate``; Kubernetes YAML must
  parse, its ConfigMap's manifests must validate, and the Deployment must fit
  them (mount paths, secret files, probes), whether its container embeds the registry
  or runs ``xresource serve``; pre-commit configs must be valid;
- ``mermaid`` blocks must name a diagram kind that MkDocs Material renders;
- every ``xresource ...`` command line in a shell or CI block must parse with
  the real argument parser, so the docs cannot show an option that does not exist.

An HTML comment right before a block changes this: ``<!-- test: skip (why) -->``
(shell blocks that install things or run forever), ``<!-- test: compile-only
(why) -->`` (Python that needs a server: it must still compile), and
``<!-- test: exit=N -->`` (the expected exit status).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import tomllib
import types
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from xresource.cli.main import build_parser, main
from xresource.schema import all_schemas

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
VENV_BIN = Path(sys.executable).parent
MAX_COMPILE_ONLY = 5
MERMAID_KINDS = {"flowchart", "graph", "sequenceDiagram", "stateDiagram-v2", "classDiagram"}  # Python samples that need a server; keep them few

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
DIRECTIVE = re.compile(r"^\s*<!--\s*test:\s*(?P<body>.*?)\s*-->\s*$")
TITLE = re.compile(r'title="(?P<title>[^"]*)"')
SHELL_OPERATOR = re.compile(r"\s(?:\||\|\||&&|;|>|>>|2>|2>&1|<)(?:\s|$)")
COMMAND = re.compile(r"(?:^|[\s\"'(:=-]|/bin/)xresource\s+(?P<rest>[a-z][^\n#]*)")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    title: str | None
    text: str
    directive: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def path_title(self) -> PurePosixPath | None:
        """The title as a sandbox path, when it is one (``resources.d/orders.yaml``)."""
        if self.title and " " not in self.title and ("/" in self.title or "." in self.title):
            path = PurePosixPath(self.title)
            assert not path.is_absolute(), f"{self.where}: title {self.title!r}"
            assert ".." not in path.parts, f"{self.where}: title {self.title!r}"
            return path
        return None

    @property
    def expected_exit(self) -> int:
        found = re.fullmatch(r"exit=(\d+)", self.directive)
        return int(found.group(1)) if found else 0


def parse_blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^{re.escape(indent)}{re.escape(fence)}\s*$", lines[j]):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        assert j < len(lines), f"{page}:{i + 1}: unclosed code block"
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        directive = DIRECTIVE.match(lines[k]) if k >= 0 else None
        lang = info.split()[0].lstrip("{.").rstrip("}") if info else ""
        title = TITLE.search(info)
        blocks.append(
            Block(
                page,
                i + 1,
                lang,
                title["title"] if title else None,
                "\n".join(body) + "\n",
                directive["body"] if directive else "",
            )
        )
        i = j + 1
    return blocks


# ---- checks shared by block kinds -----------------------------------------------------------------


def check_command(tokens: list[str], where: str) -> None:
    """The command must parse with the real parser (options, choices, required arguments)."""
    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(tokens)
    except SystemExit as exc:
        pytest.fail(
            f"{where}: `xresource {shlex.join(tokens)}` does not parse: {err.getvalue().strip()} ({exc})"
        )


def check_command_lines(block: Block) -> int:
    """Every ``xresource ...`` invocation in the block; returns how many were checked."""
    count = 0
    for line in block.text.splitlines():
        for found in COMMAND.finditer(line):
            rest = SHELL_OPERATOR.split(found["rest"], maxsplit=1)[0].strip().rstrip("\"')")
            tokens = shlex.split(rest)
            if tokens and tokens[0] in {
                "validate",
                "schema",
                "ls",
                "check",
                "plan",
                "serve",
                "init",
                "stubs",
            }:
                check_command(tokens, block.where)
                count += 1
    return count


def validate(path: Path, where: str, expected: int = 0) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    assert code == expected, (
        f"{where}: xresource validate {path} exited {code}:\n{out.getvalue()}{err.getvalue()}"
    )


def is_manifest(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("type"), str)
        and "name" in doc
        and "apiVersion" not in doc
    )


# ---- running blocks -------------------------------------------------------------------------------


@contextlib.contextmanager
def in_sandbox(sandbox: Path) -> Any:
    before_modules = set(sys.modules)
    old_cwd, old_environ = Path.cwd(), dict(os.environ)
    os.chdir(sandbox)
    sys.path.insert(0, str(sandbox))
    os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{old_environ.get('PATH', '')}"  # samples may run `xresource`
    try:
        yield
    finally:
        os.environ.clear()  # a sample may set variables (secrets for its resources): drop them
        os.environ.update(old_environ)
        os.chdir(old_cwd)
        sys.path.remove(str(sandbox))
        for name in set(sys.modules) - before_modules:  # modules the sample wrote and imported
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if origin.startswith(str(sandbox)):
                del sys.modules[name]


def run_python(block: Block, sandbox: Path) -> str | None:
    code = compile(block.text, block.where, "exec")
    if block.directive.startswith("compile-only"):
        return None
    assert not block.directive, f"{block.where}: unknown directive {block.directive!r} for python"
    # A real module, so that pydantic (and anything else) can find the sample's globals by name.
    module = types.ModuleType(f"docs_sample_{block.line}")
    out = io.StringIO()
    sys.modules[module.__name__] = module
    try:
        with in_sandbox(sandbox), contextlib.redirect_stdout(out):
            exec(code, module.__dict__)  # the docs' own samples
    finally:
        del sys.modules[module.__name__]
    return out.getvalue()


def run_shell(block: Block, sandbox: Path) -> str | None:
    check_command_lines(block)
    if block.directive.startswith("skip"):
        return None
    lines = [line for line in block.text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    simple = all(
        line.split()[0] == "xresource" and not SHELL_OPERATOR.search(" " + line.split("#")[0] + " ")
        for line in lines
    )
    if simple:  # in-process: the same code path, without a new interpreter per line
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with in_sandbox(sandbox), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            for line in lines:
                try:
                    code = main(shlex.split(line.split(" #", 1)[0])[1:])
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 2
                if code != 0:
                    break
        stdout, stderr = out.getvalue(), err.getvalue()
    else:
        env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block.text],
            cwd=sandbox,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        code, stdout, stderr = result.returncode, result.stdout, result.stderr
    assert code == block.expected_exit, (
        f"{block.where}: exit {code}, expected {block.expected_exit}\n{stdout}{stderr}"
    )
    return stdout


def check_yaml(block: Block, file: Path | None, sandbox: Path) -> None:
    docs = [d for d in yaml.safe_load_all(block.text) if d is not None]
    assert docs, f"{block.where}: empty YAML block"
    if any(isinstance(d, dict) and "apiVersion" in d for d in docs):
        check_kubernetes(block, docs, sandbox)
    elif all(is_manifest(d) for d in docs):
        if file is None:
            file = sandbox / "_untitled" / "resources.d" / f"block{block.line}.yaml"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(block.text)
        validate(file, block.where, block.expected_exit)
    elif isinstance(docs[0], dict) and "repos" in docs[0]:
        check_pre_commit_config(block, sandbox)
    else:
        check_command_lines(block)


def check_toml(block: Block, file: Path | None, sandbox: Path) -> None:
    data = tomllib.loads(block.text)
    if is_manifest(data):
        if file is None:
            file = sandbox / "_untitled" / "resources.d" / f"block{block.line}.toml"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(block.text)
        validate(file, block.where, block.expected_exit)
    elif {"registry", "streams", "resources"} & set(data):
        from xresource.settings import load_settings

        settings_file = file or sandbox / f"settings-{block.line}.toml"
        settings_file.write_text(block.text)
        load_settings(settings_file, environ=False)  # raises ManifestError naming what is wrong


def check_pre_commit_config(block: Block, sandbox: Path) -> None:
    from pre_commit.clientlib import load_config

    config_file = sandbox / f"pre-commit-{block.line}.yaml"
    config_file.write_text(block.text)
    config = load_config(str(config_file))  # raises on anything pre-commit would refuse
    ours = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    for repo in config["repos"]:
        for hook in repo["hooks"]:
            if not hook["id"].startswith("xresource-"):
                continue
            assert hook["id"] in ours, f"{block.where}: no hook {hook['id']!r} in .pre-commit-hooks.yaml"
            defined = ours[hook["id"]]
            # What pre-commit would run: the entry, the args, then the file names.
            tokens = [*shlex.split(hook.get("entry", defined["entry"]))[1:], *hook.get("args", [])]
            if hook.get("pass_filenames", defined.get("pass_filenames", True)):
                tokens.append("resources.d/example.yaml")
            check_command(tokens, block.where)


# ---- Kubernetes -------------------------------------------------------------------------------------


def check_kubernetes(block: Block, docs: list[Any], sandbox: Path) -> None:
    check_command_lines(block)  # xresource in a Job, an init container or a plugin must parse
    for doc in docs:
        assert isinstance(doc, dict), f"{block.where}: {doc}"
        assert {"apiVersion", "kind"} <= set(doc), f"{block.where}: {doc}"
        if doc["kind"] != "Kustomization" or "metadata" in doc:
            assert doc.get("metadata", {}).get("name"), f"{block.where}: {doc['kind']} without a name"
    kinds = {d["kind"]: d for d in docs}

    # The manifests a ConfigMap carries are valid, together (names unique across the folder).
    manifests: dict[str, str] = {}
    for config_map in (d for d in docs if d["kind"] == "ConfigMap"):
        folder = sandbox / "_configmap" / f"block{block.line}-{config_map['metadata']['name']}"
        folder.mkdir(parents=True)
        found = {
            k: v for k, v in config_map.get("data", {}).items() if k.endswith((".yaml", ".yml", ".toml"))
        }
        assert found, f"{block.where}: the ConfigMap holds no manifests"
        for key, text in found.items():
            (folder / key).write_text(text)
        validate(folder, block.where)
        manifests.update(found)
    if "Deployment" in kinds:
        check_deployment(block, kinds, manifests)


def check_deployment(block: Block, kinds: dict[str, Any], manifests: dict[str, str]) -> None:
    """The Deployment fits the manifests it runs on: paths, secret files, host, port and probes.

    Its container either embeds the registry (the application, told the mounted folder by
    an environment variable or an argument) or runs ``xresource serve`` on that folder.
    """
    assert {"ConfigMap", "Secret"} <= set(kinds), f"{block.where}: show the ConfigMap and Secret too"
    config_map, secret, deployment = kinds["ConfigMap"], kinds["Secret"], kinds["Deployment"]

    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    cm_volumes = {
        name
        for name, v in volumes.items()
        if v.get("configMap", {}).get("name") == config_map["metadata"]["name"]
    }
    assert cm_volumes, f"{block.where}: no volume holds the ConfigMap"
    (container,) = [
        c for c in pod["containers"] if any(m["name"] in cm_volumes for m in c.get("volumeMounts", []))
    ]
    argv = [*container.get("command", []), *container.get("args", [])]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    named = {p.get("name"): p["containerPort"] for p in container["ports"]}
    if "xresource" in argv:
        tokens = argv[argv.index("xresource") + 1 :]
        check_command(tokens, block.where)
        args = build_parser().parse_args(tokens)
        assert args.command == "serve", f"{block.where}: the container should run `xresource serve`"
        assert args.host == "0.0.0.0", (
            f"{block.where}: probes reach the pod's IP, so serve must listen on 0.0.0.0"
        )
        folder, port, prefix = args.path.rstrip("/"), args.port, ""
    else:
        (folder,) = [path for path, m in mounts.items() if m["name"] in cm_volumes]
        told = [*argv, *(str(e.get("value", "")) for e in container.get("env", []))]
        assert any(t.rstrip("/") == folder for t in told), (
            f"{block.where}: the application is not told where the manifests are ({folder}): "
            "pass the folder in an environment variable or an argument"
        )
        ready = container["readinessProbe"]["httpGet"]
        port = named.get(ready["port"], ready["port"])
        prefix = ready["path"].removesuffix("/readyz")

    # The ConfigMap is mounted as a folder (no subPath: subPath mounts never see updates).
    cm_mount = mounts.get(folder)
    assert cm_mount is not None, f"{block.where}: nothing mounted at {folder}"
    assert "subPath" not in cm_mount, f"{block.where}: a subPath mount never receives ConfigMap updates"
    assert cm_mount["name"] in cm_volumes

    # Every ${file:...} secret a manifest names is a key of the Secret, mounted at that folder.
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    referenced = re.findall(r"\$\{file:([^}]+)\}", "".join(manifests.values()))
    assert referenced, f"{block.where}: the example should read a secret from a file"
    for target in referenced:
        folder_path, key = target.rsplit("/", 1)
        mount = mounts.get(folder_path)
        assert mount is not None, f"{block.where}: {target} is not under a volume mount"
        assert volumes[mount["name"]]["secret"]["secretName"] == secret["metadata"]["name"]
        assert key in secret_keys, f"{block.where}: the Secret has no key {key!r}"

    ports = {p["containerPort"] for p in container["ports"]}
    assert port in ports, (
        f"{block.where}: the registry's routes are on {port}, the container declares {ports}"
    )
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        http = container[probe]["httpGet"]
        assert http["path"] == prefix + path, f"{block.where}: {probe} should ask {prefix + path}"
        assert named.get(http["port"], http["port"]) == port, f"{block.where}: {probe} port"


# ---- the tests ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema_files() -> dict[str, str]:
    return all_schemas()


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_samples(page: Path, tmp_path: Path, schema_files: dict[str, str]) -> None:
    (tmp_path / "schemas").mkdir()
    for name, text in schema_files.items():
        (tmp_path / "schemas" / name).write_text(text)
    printed: str | None = None
    for block in parse_blocks(page):
        if block.title == "Output":
            assert printed is not None, f"{block.where}: an Output block must follow a block that ran"
            want = [line.rstrip() for line in block.text.strip("\n").splitlines()]
            got = [line.rstrip() for line in printed.strip("\n").splitlines()]
            assert got == want, f"{block.where}: the sample printed\n" + "\n".join(got)
            printed = None
            continue
        file = None
        if block.path_title is not None:
            file = tmp_path / block.path_title
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(block.text)
        printed = None
        if block.lang == "python":
            printed = run_python(block, tmp_path)
        elif block.lang in ("sh", "bash", "shell", "console"):
            printed = run_shell(block, tmp_path)
        elif block.lang in ("yaml", "yml"):
            check_yaml(block, file, tmp_path)
        elif block.lang == "toml":
            check_toml(block, file, tmp_path)
        elif block.lang == "json":
            import json

            json.loads(block.text)
        elif block.lang == "mermaid":
            kind = block.text.split(maxsplit=1)[0] if block.text.strip() else ""
            assert kind in MERMAID_KINDS, f"{block.where}: not a Mermaid diagram MkDocs renders: {kind!r}"
        else:
            assert block.lang in ("text", "csv", ""), f"{block.where}: no rule for ```{block.lang} blocks"


def test_directives_are_known_and_compile_only_is_rare() -> None:
    compile_only = []
    for page in PAGES:
        for block in parse_blocks(page):
            if block.directive.startswith("compile-only"):
                assert block.lang == "python", block.where
                assert "(" in block.directive, f"{block.where}: say why it cannot run"
                compile_only.append(block.where)
            elif block.directive.startswith("skip"):
                assert block.lang in ("sh", "bash"), f"{block.where}: only shell blocks may be skipped"
                assert "(" in block.directive, f"{block.where}: say why it is skipped"
            else:
                assert block.directive == "" or re.fullmatch(r"exit=\d+", block.directive), block.where
    assert len(compile_only) <= MAX_COMPILE_ONLY, compile_only


def test_kubernetes_guide_has_a_checked_deployment() -> None:
    """The guide's cross-checks only run on a block with a Deployment: make sure there is one."""
    blocks = [b for b in parse_blocks(DOCS / "kubernetes.md") if b.lang == "yaml"]
    kinds = [{d.get("kind") for d in yaml.safe_load_all(b.text) if isinstance(d, dict)} for b in blocks]
    assert any({"ConfigMap", "Secret", "Deployment"} <= k for k in kinds)


def test_reference_pages_are_current() -> None:
    """Like `xresource schema --check`: run scripts/gen_docs.py when the models change."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None
    assert spec.loader is not None
    gen_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_docs)
    old_columns = os.environ.get("COLUMNS")
    try:
        assert gen_docs.stale() == [], "stale; run: .venv/bin/python scripts/gen_docs.py"
    finally:
        if old_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old_columns


def test_mkdocs_build_strict_offline(tmp_path: Path) -> None:
    # A proxy that refuses every connection: a plugin that fetches anything fails the build.
    env = dict(os.environ, HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="")
    env["NO_MKDOCS_2_WARNING"] = "1"  # Material's end-of-life banner
    env["http_proxy"], env["https_proxy"] = env["HTTP_PROXY"], env["HTTPS_PROXY"]
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "postgresql" / "index.html").is_file()
    assert (tmp_path / "site" / "search" / "search_index.json").is_file()
