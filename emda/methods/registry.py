"""Discover method plugins through entry points and collect their methods.

Plugins come only from installed entry points in the ``emda`` group (built-ins
included). ``EMDA_DISABLE_PLUGINS=a,b`` skips entry points by name (``*`` skips
all). A plugin that fails to import, registers badly or implements a misspelled
hook is reported by name and the other plugins still load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from emda.errors import EmdaError
from emda.methods import hookspecs
from emda.methods.base import Method

ENTRY_POINT_GROUP = "emda"
DISABLE_ENV = "EMDA_DISABLE_PLUGINS"


@dataclass(frozen=True)
class MethodInfo:
    name: str
    cls: type[Method]
    plugin: str  # entry-point name
    origin: str  # "distribution version: module" where the plugin came from


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    origin: str
    error: str


class MethodRegister:
    """Handed to ``emda_register_methods``; one per plugin so errors can name it."""

    def __init__(self, registry: MethodRegistry, plugin: str, origin: str) -> None:
        self._registry = registry
        self._plugin = plugin
        self._origin = origin

    def add(self, method_cls: type[Method]) -> None:
        if not (isinstance(method_cls, type) and issubclass(method_cls, Method)):
            raise TypeError(f"register.add expects a Method subclass, got {method_cls!r}")
        if not method_cls.name or not method_cls.name.replace("-", "_").isidentifier():
            raise ValueError(f"{method_cls.__name__}.name must be a short identifier")
        name = method_cls.name
        existing = self._registry.methods.get(name)
        if existing is not None:
            raise EmdaError(
                f"method '{name}' is registered by two plugins: '{existing.plugin}' "
                f"({existing.origin}) and '{self._plugin}' ({self._origin}); uninstall one "
                f"or set {DISABLE_ENV}={self._plugin}"
            )
        self._registry.methods[name] = MethodInfo(name, method_cls, self._plugin, self._origin)


@dataclass
class MethodRegistry:
    methods: dict[str, MethodInfo] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    def get(self, name: str) -> MethodInfo:
        if name in self.methods:
            return self.methods[name]
        hint = ""
        failed = [f.plugin for f in self.failures]
        if failed:
            hint = f"; plugins that failed to load: {', '.join(failed)} (see `emda methods`)"
        known = ", ".join(sorted(self.methods)) or "none"
        raise EmdaError(f"--method {name}: unknown method (available: {known}){hint}")


def _disabled_names() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _origin(ep) -> str:
    dist = getattr(ep, "dist", None)
    where = f"{dist.name} {dist.version}: " if dist is not None else ""
    return f"{where}{ep.value}"


def load_registry() -> MethodRegistry:
    """Load every enabled plugin from the ``emda`` entry-point group."""
    registry = MethodRegistry()
    disabled = _disabled_names()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    seen: set[str] = set()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen:  # the same distribution found twice on sys.path
            continue
        seen.add(ep.name)
        if "*" in disabled or ep.name in disabled:
            registry.disabled.append(ep.name)
            continue
        origin = _origin(ep)
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        # any import-time error must not break other plugins; nor may sys.exit() there
        except (Exception, SystemExit) as exc:
            registry.failures.append(PluginFailure(ep.name, origin, _describe(exc)))
            continue
        try:
            _check_hook_names(pm, plugin)
            for impl in pm.hook.emda_register_methods.get_hookimpls():
                if impl.plugin_name == ep.name:
                    impl.function(register=MethodRegister(registry, ep.name, origin))
        except EmdaError:
            raise
        except (Exception, SystemExit) as exc:
            registry.failures.append(PluginFailure(ep.name, origin, _describe(exc)))
            pm.unregister(name=ep.name)
    return registry


def _check_hook_names(pm: pluggy.PluginManager, plugin: object) -> None:
    """A hookimpl whose name matches no hookspec is a typo; say which one."""
    known = set(pm.hook.__dict__)
    for attr in dir(plugin):
        if not attr.startswith("emda_") or pm.parse_hookimpl_opts(plugin, attr) is None:
            continue
        if attr not in known or getattr(pm.hook, attr).spec is None:
            specs = ", ".join(sorted(k for k in known if k.startswith("emda_")))
            raise pluggy.PluginValidationError(
                plugin, f"unknown hook '{attr}' (emda's hooks: {specs})"
            )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
