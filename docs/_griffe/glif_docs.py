"""Griffe extensions for the glif-jax documentation build (not part of the package).

MappedSubpackages: setup.py installs the top-level folders ``train/`` and ``configs/`` as
the subpackages ``glif_jax.train`` and ``glif_jax.configs``; griffe, reading the source tree,
does not know that. When ``glif_jax`` is loaded, this extension loads each mapped folder
with the same loader (same collections, parser and extensions) and attaches it to
``glif_jax`` under its installed name, so ``::: glif_jax.train.train`` renders from source.

SphinxRoles: the docstrings use reStructuredText roles (``:func:`glif_scan```,
``:class:`~glif_jax.neuron.NeuronConfig```). They are rewritten into mkdocstrings
cross-references, resolved in the scope of the documented object, so that a reference that
does not resolve fails ``mkdocs build --strict``. Targets outside glif-jax (``jax.lax.scan``)
become plain code. A paragraph ending in ``::`` (reST's literal-block marker) gets ``:``.

Field lists: a paragraph of ``name: description`` lines (two or more, or one with indented
continuation lines) becomes a Markdown list, so that it neither runs together into one
paragraph nor, when a line is followed by an indented one, turns into a Google-style
admonition titled by its description.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|class|mod|data|meth|attr|obj|exc|const|py:\w+):`(~?)([\w.]+)`")
LITERAL_MARKER = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)
FIELD = re.compile(r"^(?P<name>[A-Za-z_][\w ./,*-]{0,60}?): (?P<text>\S.*)$")
IDENTIFIERS = re.compile(r"[\w.*]+(?: ?[/,] ?[\w.*]+)*")
EXTERNAL = ("jax", "flax", "numpy", "optax", "orbax", "ml_collections", "pandas", "matplotlib", "tonic",
            "tensorflow", "tensorflow_datasets", "sklearn")


class MappedSubpackages(griffe.Extension):
    """Attach folders as subpackages of a loaded package (``{"glif_jax.train": "train"}``).

    Folders are relative to the directory that holds the package (the repository root).
    """

    def __init__(self, mapping: dict[str, str]) -> None:
        super().__init__()
        self.mapping = mapping

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for dotted, folder in self.mapping.items():
            parent_path, _, name = dotted.rpartition(".")
            if parent_path != pkg.path or name in pkg.members:
                continue
            # relative to the folder that holds the package, as setup.py's package_dir is
            folder_path = (Path(pkg.filepath).parent.parent / folder).resolve()
            if folder_path.name != name:
                raise ValueError(f"MappedSubpackages: folder {folder} must be named {name!r}")
            collection = loader.modules_collection
            if name in collection.members:
                raise ValueError(f"MappedSubpackages: a top-level module {name!r} is already loaded")
            sub_loader = griffe.GriffeLoader(
                extensions=loader.extensions,
                search_paths=[str(folder_path.parent)],
                docstring_parser=loader.docstring_parser,
                docstring_options=loader.docstring_options,
                lines_collection=loader.lines_collection,
                modules_collection=collection,
            )
            sub_loader.glif_docs_mapped = True  # SphinxRoles waits for the parent package
            module = sub_loader.load(name, try_relative_path=False)
            del collection.members[name]  # it lives under pkg, not at the top level
            pkg.set_member(name, module)
            module.parent = pkg


class SphinxRoles(griffe.Extension):
    """Rewrite reST roles and ``::`` markers of every docstring once a package is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if getattr(loader, "glif_docs_mapped", False):  # a mapped subpackage: done with its parent
            return
        self._rewrite(pkg, loader, seen=set())

    def _rewrite(self, obj: griffe.Object, loader: griffe.GriffeLoader, seen: set[int]) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if obj.docstring is not None:
            text = ROLE.sub(lambda match: self._reference(obj, loader, match), obj.docstring.value)
            obj.docstring.value = _field_lists(LITERAL_MARKER.sub(":", text))
        for member in list(obj.members.values()):
            if not member.is_alias:
                self._rewrite(member, loader, seen)

    @staticmethod
    def _reference(obj: griffe.Object, loader: griffe.GriffeLoader, match: re.Match) -> str:
        short, target = match.group(1) == "~", match.group(2)
        text = f"`{target.rsplit('.', 1)[-1] if short else target}`"
        if target.split(".", 1)[0] in EXTERNAL:
            return text
        head, _, rest = target.partition(".")
        try:
            resolved = obj.resolve(head)
        except griffe.NameResolutionError:
            resolved = head  # left as is: strict mode reports it if it does not exist
        full = f"{resolved}.{rest}" if rest else resolved
        return f"[{text}][{full}]"


def _field_lists(text: str) -> str:
    """Paragraphs made only of ``name: text`` lines and indented continuations -> Markdown lists."""
    paragraphs = re.split(r"(\n[ \t]*\n)", text)
    for index in range(0, len(paragraphs), 2):
        lines = paragraphs[index].split("\n")
        fields = [FIELD.match(line) for line in lines]
        names = [match.group("name") for match in fields if match]
        if (fields[0] is None
                or not all(match or line.startswith(" ") for match, line in zip(fields, lines))
                or not all(IDENTIFIERS.fullmatch(name) for name in names)
                or (len(names) < 2 and len(lines) < 2)):
            continue  # prose, or a one-line "Title: text" sentence
        items = []
        for line in lines:
            match = FIELD.match(line)
            if match is None:
                items.append(line)
                continue
            name = re.sub(r"[\w.*]+", lambda word: f"`{word.group(0)}`", match.group("name"))
            items.append(f"- {name}: {match.group('text')}")
        paragraphs[index] = "\n".join(items)
    return "".join(paragraphs)
