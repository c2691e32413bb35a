"""YAML manifests: a safe, bounded parse that keeps the line of every key.

We compose the node graph with libyaml (``CSafeLoader`` when available: about
8x faster than pure Python, and it still gives marks) and build the Python
data ourselves, so that we can (a) record each key's position, (b) refuse
tags that build objects, (c) refuse duplicate keys, and (d) stop alias
expansion ("billion laughs") after a fixed number of nodes instead of
building a huge structure.

Only expansions count toward that limit: a node built for the second time
(it was reached through an alias) counts, a node written in the file does not,
since the file's size already bounds those. So 60,000 plain tags load, while a
few lines of nested aliases that would expand to millions of nodes do not.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from xresource.errors import Problem
from xresource.manifests.document import Document, FieldPath, Mark

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_NODES = 50_000  # per document: nodes built again through aliases
MAX_DEPTH = 64

_STR_TAG = "tag:yaml.org,2002:str"
_SCALAR_TAGS = {
    _STR_TAG,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
}
# The safe loader's own functions for the scalar tags. They keep no state (unlike
# ``construct_object``, which remembers every node), so one constructor serves every file.
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_SCALAR_CONSTRUCTORS = {tag: yaml.constructor.SafeConstructor.yaml_constructors[tag] for tag in _SCALAR_TAGS}
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"

MODELINE_RE = re.compile(r"^#\s*yaml-language-server:\s*\$schema=(\S+)", re.MULTILINE)


class _Reject(Exception):
    def __init__(self, message: str, mark: Mark) -> None:
        super().__init__(message)
        self.mark = mark


def _mark(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self) -> None:
        self.expanded = 0  # nodes built more than once (reached again through an alias)
        self.seen: set[int] = set()  # ids of nodes built once; the graph holds them alive
        self.marks: dict[FieldPath, Mark] = {}
        self.value_marks: dict[FieldPath, Mark] = {}

    def build(self, node: yaml.Node, path: FieldPath, depth: int) -> Any:
        if id(node) in self.seen:
            self.expanded += 1
            if self.expanded > MAX_NODES:
                raise _Reject(
                    f"aliases expand to more than {MAX_NODES} nodes (an alias bomb?); refusing to load it",
                    _mark(node),
                )
        else:
            self.seen.add(id(node))
        if depth > MAX_DEPTH:
            raise _Reject(f"document nests deeper than {MAX_DEPTH} levels", _mark(node))
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR_TAG:
                return node.value  # what the safe loader's str constructor returns
            if node.tag not in _SCALAR_TAGS:
                raise _Reject(f"tag {node.tag!r} is not allowed (manifests are plain data)", _mark(node))
            return _SCALAR_CONSTRUCTORS[node.tag](_CONSTRUCTOR, node)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise _Reject(f"tag {node.tag!r} is not allowed (manifests are plain data)", _mark(node))
            items = []
            for i, child in enumerate(node.value):
                self.marks.setdefault((*path, i), _mark(child))
                items.append(self.build(child, (*path, i), depth + 1))
            return items
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                raise _Reject(f"tag {node.tag!r} is not allowed (manifests are plain data)", _mark(node))
            return self._mapping(node, path, depth)
        raise _Reject(f"unsupported YAML node {type(node).__name__}", _mark(node))

    def _mapping(self, node: yaml.MappingNode, path: FieldPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        explicit: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    merged = self.build(source, path, depth + 1)
                    if not isinstance(merged, dict):
                        raise _Reject("a merge key (<<) needs a mapping", _mark(source))
                    for k, v in merged.items():
                        result.setdefault(k, v)
                continue
            key = self.build(key_node, path, depth + 1)
            if not isinstance(key, str):
                raise _Reject(f"keys must be strings, got {type(key).__name__} {key!r}", _mark(key_node))
            if key in explicit:
                raise _Reject(f"duplicate key {key!r}", _mark(key_node))
            explicit.add(key)
            key_path = (*path, key)
            self.marks[key_path] = _mark(key_node)
            self.value_marks[key_path] = _mark(value_node)
            result[key] = self.build(value_node, key_path, depth + 1)
        return result


def _position(text: str, offset: int) -> Mark:
    """1-based line and column of a reader error's offset (libyaml counts UTF-8 bytes)."""
    if _Loader is not yaml.SafeLoader:
        offset = len(text.encode("utf-8")[:offset].decode("utf-8", "ignore"))
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def read_yaml(file: Path, text: str) -> tuple[list[Document], list[Problem]]:
    """Parse every document of ``text``; a problem stops the file (later documents are unreliable)."""
    docs: list[Document] = []
    modeline = MODELINE_RE.search(text)
    declared = modeline.group(1) if modeline else None
    loader = _Loader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - libyaml returns None only at the end
                break
            builder = _Builder()
            data = builder.build(node, (), 0)
            line, column = _mark(node)
            if not (data is None or (isinstance(data, dict) and not data)):
                docs.append(
                    Document(file, index, data, line, column, builder.marks, builder.value_marks, declared)
                )
            index += 1
    except _Reject as exc:
        return docs, [Problem(str(file), exc.mark[0], exc.mark[1], str(exc), code="yaml")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        start = exc.context_mark
        if start is not None and mark is not None and start.line != mark.line:
            message += f" (the construct started at line {start.line + 1}, column {start.column + 1})"
        return docs, [
            Problem(
                str(file),
                mark.line + 1 if mark else None,
                mark.column + 1 if mark else None,
                f"invalid YAML: {message}",
                code="yaml",
            )
        ]
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, other controls)
        line, column = _position(text, exc.position)
        code = ord(exc.character) if isinstance(exc.character, str) else int(exc.character)
        return docs, [
            Problem(
                str(file), line, column, f"invalid YAML: character U+{code:04X} is not allowed", code="yaml"
            )
        ]
    except yaml.YAMLError as exc:
        return docs, [Problem(str(file), None, None, f"invalid YAML: {exc}", code="yaml")]
    finally:
        loader.dispose()
    return docs, []
