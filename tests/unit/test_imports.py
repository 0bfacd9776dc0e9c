"""The package's module-level import graph, read from the source: no module imports itself
through others (no cycle), and the public watermark hook loads nothing of the chain, so an
owner's training script needs no chain code (`ml_service/__init__.py` says the same of the ML
service). Imports inside functions, which run only when called, are not edges."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import authchain

ROOT = Path(authchain.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py") if "pb" not in p.relative_to(ROOT).parts}


def _parents(name: str) -> list[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@cache
def imports_of(name: str, lazy: bool = False) -> frozenset[str]:
    """The authchain modules `name` imports when it is imported (not under TYPE_CHECKING);
    with `lazy`, also those its functions import when they run."""
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Try | ast.If | ast.With):
            todo.extend(node.body)
        elif lazy:
            todo.extend(n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt))
    # a module's own ancestor packages are already being imported when it runs: not an edge
    return frozenset(
        p
        for f in found
        if f.startswith("authchain")
        for p in _parents(f)
        if p in MODULES and p != name and not name.startswith(p + ".")
    )


def closure(name: str, lazy: bool = False) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(imports_of(current, lazy))
    return seen


def test_the_graph_is_read() -> None:
    assert "authchain.ml_service.outputs" in imports_of("authchain.watermark")
    assert "authchain.chain.crypto" not in imports_of("authchain.watermark")
    assert "authchain.chain.crypto" in imports_of("authchain.watermark", lazy=True)
    assert "authchain.chain.crypto" in imports_of("authchain.client")
    assert len(MODULES) > 80


def test_the_watermark_hook_imports_nothing_of_the_chain() -> None:
    for public in ("authchain.watermark", "authchain.ml_service.owner"):
        chain = sorted(m for m in closure(public) if m.startswith("authchain.chain"))
        assert chain == [], f"{public} imports {chain}"


def test_no_module_imports_itself_through_others() -> None:
    """Not even from inside a function: two modules that need each other are one module."""
    cycles = {
        m: sorted(n for n in imports_of(m, lazy=True) if m in closure(n, lazy=True))
        for m in MODULES
    }
    assert {m: via for m, via in cycles.items() if via} == {}


def test_the_package_boundaries_hold() -> None:
    """docs/architecture.md's table: the chain never loads the gateway or the ML service; the
    ML service never loads the chain (validators reach it over HTTP only)."""
    crossings = {
        m: sorted(n for n in closure(m) if n.startswith(forbidden))
        for prefix, forbidden in [
            ("authchain.chain", ("authchain.gateway", "authchain.ml_service")),
            ("authchain.ml_service", ("authchain.chain", "authchain.gateway")),
        ]
        for m in MODULES
        if m.startswith(prefix)
    }
    assert {m: bad for m, bad in crossings.items() if bad} == {}


def test_the_socket_server_loads_no_grpc() -> None:
    """The chain's container image leaves grpcio out (deploy/docker/Dockerfile.chain): the CLI
    and `authchain abci` reach the gRPC transport only when `abci.transport = "grpc"` asks."""
    grpc = "authchain.chain.abci.grpc_server"
    assert grpc in closure("authchain.chain.abci.run", lazy=True)
    for entry in ("authchain.cli", "authchain.chain.abci.run", "authchain.testnet"):
        assert grpc not in closure(entry), entry
