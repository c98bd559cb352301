"""Open registries of generators and directors: a factory and a capabilities record per name.

Built-ins are registered below; code registers more with `register_generator` / `register_director`;
other packages add theirs through entry points, named after the backend and pointing at its factory,
whose `capabilities` attribute is its record:

    [project.entry-points."avatar_engine.generators"]
    solid = "my_package.solid:SolidGenerator"   # SolidGenerator.capabilities = GeneratorCapabilities(...)

A generator factory is called as factory(avatar, threads) and returns an engine.generator.base.Generator;
a director factory as factory(seed=..., **options) and returns an engine.director.base.Director (options:
the server settings of engine.director.director_options, for directors that need a server).

Entry points are listed on a registry's first use and imported when their name is first asked for, so a
broken plugin fails only the configurations that choose it, with an error that names the entry point.
Config validation (engine.config) and the CLI help (server.py) read these registries; the session's
backends come from engine.generator.generator_for and engine.director.director_for.

This module imports no backend: importing it costs nothing, and the built-ins import their modules
(torch, onnxruntime, openai, ...) only when built.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from engine.director.base import Director
    from engine.generator.avatar import PreparedAvatar
    from engine.generator.base import Generator

log = logging.getLogger(__name__)

GENERATOR_GROUP = "avatar_engine.generators"
DIRECTOR_GROUP = "avatar_engine.directors"


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    description: str = ""  # one line for the CLI help


@dataclass(frozen=True, kw_only=True)
class GeneratorCapabilities(Capabilities):
    devices: tuple[str, ...] = ("cpu",)  # where it can render: "cpu", "cuda"
    needs_gpu: bool = False  # refuses to start without a CUDA GPU
    max_window_frames: int | None = None  # the longest window one render call takes; None: any length
    # One instance may serve several sessions at once: render() is called from their threads concurrently
    # (per-call buffers, no state between calls). Shareable generators load their weights once per avatar.
    shareable: bool = False
    # May render in a process of its own (engine/render_process.py; EngineConfig.render_processes): the factory
    # is found by name there too (a built-in or an entry point) and the avatar is all it needs.
    out_of_process: bool = False


@dataclass(frozen=True, kw_only=True)
class DirectorCapabilities(Capabilities):
    # Plans with a model behind director_url / director_model (validated), and takes the server options.
    needs_server: bool = False
    instant: bool = False  # plans synchronously (plan_now) in microseconds: usable as the fallback


GeneratorFactory = Callable[["PreparedAvatar", int], "Generator"]
DirectorFactory = Callable[..., "Director"]
F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=Capabilities)


@dataclass(frozen=True)
class Backend(Generic[F, C]):
    name: str
    factory: F
    capabilities: C


class Registry(Generic[F, C]):
    """Backends of one kind by name. A later registration of a name replaces the earlier one."""

    def __init__(self, kind: str, group: str, capabilities_type: type[C]) -> None:
        self.kind, self.group, self.capabilities_type = kind, group, capabilities_type
        self._backends: dict[str, Backend[F, C]] = {}
        self._entry_points: dict[str, EntryPoint] | None = None  # listed on first use, imported on demand
        self._lock = threading.Lock()

    def register(self, name: str, factory: F, capabilities: C | None = None) -> Backend[F, C]:
        """capabilities: by default the factory's `capabilities` attribute."""
        caps = capabilities if capabilities is not None else getattr(factory, "capabilities", None)
        if not isinstance(caps, self.capabilities_type):
            raise TypeError(f"{self.kind} {name!r} needs a {self.capabilities_type.__name__}, got {caps!r}")
        backend = Backend(name, factory, caps)
        self._backends[name] = backend
        return backend

    def add_entry_point(self, entry_point: EntryPoint) -> None:
        """A plugin, imported when its name is first asked for (the environment's are added on first use)."""
        self._plugins()[entry_point.name] = entry_point

    def names(self) -> list[str]:
        return [*self._backends, *(name for name in self._plugins() if name not in self._backends)]

    def get(self, name: str) -> Backend[F, C]:
        """The backend registered as `name`; a ValueError listing the names if there is none."""
        backend = self._backends.get(name)
        if backend is not None:
            return backend
        entry_point = self._plugins().get(name)
        if entry_point is None:
            raise ValueError(f"unknown {self.kind} {name!r}: choose one of {', '.join(self.names())}")
        return self._load(entry_point)

    def describe(self) -> str:
        """'name (description), ...' for the CLI help; plugins not imported yet say where they come from."""
        parts = []
        for name in self.names():
            backend = self._backends.get(name)
            about = backend.capabilities.description if backend else f"from {self._plugins()[name].value}"
            parts.append(f"{name} ({about})" if about else name)
        return ", ".join(parts)

    def _plugins(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=self.group)}
            for name in self._entry_points.keys() & self._backends.keys():
                log.warning("%s %r: the entry point %s is ignored, a registered %s has that name",
                            self.kind, name, self._entry_points[name].value, self.kind)
        return self._entry_points

    def _load(self, entry_point: EntryPoint) -> Backend[F, C]:
        with self._lock:  # two sessions starting at once import the plugin once
            if entry_point.name in self._backends:
                return self._backends[entry_point.name]
            where = f"entry point {entry_point.name} = {entry_point.value!r} (group {self.group})"
            try:
                factory = entry_point.load()
            except Exception as e:
                raise ValueError(f"{self.kind} {entry_point.name!r}: cannot import {where}: "
                                 f"{type(e).__name__}: {e}") from e
            try:
                return self.register(entry_point.name, factory)
            except TypeError as e:
                raise ValueError(f"{self.kind} {entry_point.name!r}: {where} has no usable `capabilities` "
                                 f"attribute ({e})") from e


GENERATORS: Registry[GeneratorFactory, GeneratorCapabilities] = Registry(
    "generator", GENERATOR_GROUP, GeneratorCapabilities)
DIRECTORS: Registry[DirectorFactory, DirectorCapabilities] = Registry("director", DIRECTOR_GROUP, DirectorCapabilities)


def register_generator(name: str, factory: GeneratorFactory, capabilities: GeneratorCapabilities | None = None) -> None:
    GENERATORS.register(name, factory, capabilities)


def register_director(name: str, factory: DirectorFactory, capabilities: DirectorCapabilities | None = None) -> None:
    DIRECTORS.register(name, factory, capabilities)


def generator_names() -> list[str]:
    return GENERATORS.names()


def director_names() -> list[str]:
    return DIRECTORS.names()


# -- built-ins: each imports its module when first built -------------------------------------------------
def _warp(avatar: PreparedAvatar, threads: int) -> Generator:
    from engine.generator.warp import WarpGenerator

    return WarpGenerator(avatar, threads)


def _torch(avatar: PreparedAvatar, threads: int) -> Generator:
    from engine.generator.variants import TorchGenerator

    return TorchGenerator(avatar, threads)


def _compile(avatar: PreparedAvatar, threads: int) -> Generator:
    from engine.generator.variants import CompiledGenerator

    return CompiledGenerator(avatar, threads)


def _onnx(avatar: PreparedAvatar, threads: int) -> Generator:
    from engine.generator.variants import OnnxGenerator

    return OnnxGenerator(avatar, threads)


def _tensorrt(avatar: PreparedAvatar, threads: int) -> Generator:
    from engine.generator.variants import tensorrt_generator

    return tensorrt_generator(avatar, threads)


def _rules(seed: int = 0, **_options: Any) -> Director:
    from engine.director.rules import RuleDirector

    return RuleDirector(seed=seed)


def _vllm(seed: int = 0, url: str = "", model: str = "", **options: Any) -> Director:
    try:
        from engine.director.vllm import VllmDirector
    except ImportError as e:
        raise ValueError(f"the vllm director needs the openai client: pip install -e '.[director]' ({e})") from e
    return VllmDirector(url, model, seed=seed, **options)


CPU_OR_CUDA = ("cpu", "cuda")
register_generator("warp", _warp, GeneratorCapabilities(
    description="default: the CPU fast path, OpenCV remap", shareable=True, out_of_process=True))
register_generator("torch", _torch, GeneratorCapabilities(
    description="the torch module's forward, on CUDA when present", devices=CPU_OR_CUDA, shareable=True))
register_generator("compile", _compile, GeneratorCapabilities(
    description="the module through torch.compile", devices=CPU_OR_CUDA, shareable=True))
register_generator("onnx", _onnx, GeneratorCapabilities(
    description="an ONNX export on onnxruntime, CUDA when present", devices=CPU_OR_CUDA, shareable=True))
# Not shareable: a TensorRT execution context holds the shapes and addresses of one call at a time.
register_generator("tensorrt", _tensorrt, GeneratorCapabilities(
    description="a TensorRT engine built from the ONNX export; needs CUDA", devices=("cuda",), needs_gpu=True))
register_director("rules", _rules, DirectorCapabilities(
    description="default: blinks, persona mood and host commands, no model", instant=True))
register_director("vllm", _vllm, DirectorCapabilities(
    description="a model behind an OpenAI-compatible server; needs --director-url, --director-model",
    needs_server=True))
