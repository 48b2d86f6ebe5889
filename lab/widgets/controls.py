"""``RunControls``: ipywidgets that edit a :class:`~lab.config.RunConfig`, and nothing else.

Each control shows one ``RunConfig`` field. When a control changes, the controls build a
new config from *all* the controls' values with :func:`dataclasses.replace` -- the same frozen
object a notebook's parameters cell builds -- and ``RunConfig`` itself validates it. An invalid
combination (a Poisson load without a rate) leaves :attr:`RunControls.config` at the last
valid config and sets :attr:`RunControls.error`. No control runs anything::

    controls = RunControls(lab.RunConfig(runtime="simnpu", preset="teaching"))
    controls.set(mode="async", workers=4)          # what a user does with the mouse
    assert controls.config == lab.RunConfig(runtime="simnpu", preset="teaching", mode="async", workers=4)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as W

from lab.config import LOADS, Mode, RunConfig
from lab.errors import ConfigError

__all__ = ["CONTROLLED_FIELDS", "RunControls"]

_STYLE = {"description_width": "118px"}
_WIDTH = "290px"

#: A dropdown's stand-in for None (ipywidgets reads a None value as "nothing selected").
_NONE = "<none>"


def _from_widget(value: Any) -> Any:
    return None if value == _NONE else value


def _to_widget(value: Any) -> Any:
    return _NONE if value is None else value


@dataclass(frozen=True)
class _Field:
    """How one ``RunConfig`` field is shown: its control and the value conversions both ways."""

    name: str
    label: str
    make: Callable[[Any], W.ValueWidget]
    to_config: Callable[[Any], Any] = _from_widget
    to_widget: Callable[[Any], Any] = _to_widget
    tooltip: str = ""


def _pairs(options: Sequence[Any]) -> list[tuple[str, Any]]:
    """(label, widget value) pairs; a None value becomes :data:`_NONE`."""
    pairs = [o if isinstance(o, tuple) else (str(o), o) for o in options]
    return [(label, _to_widget(value)) for label, value in pairs]


def _dropdown(options: Sequence[Any]) -> Callable[[Any], W.ValueWidget]:
    """A dropdown over ``options`` ((label, value) pairs or values); a value not listed is added."""
    def make(value: Any) -> W.ValueWidget:
        opts = _pairs(options)
        if value not in [v for _, v in opts]:
            opts.append((str(value), value))
        return W.Dropdown(options=opts, value=value)
    return make


def _int_box(lo: int, hi: int) -> Callable[[Any], W.ValueWidget]:
    def make(value: Any) -> W.ValueWidget:
        return W.BoundedIntText(value=value, min=lo, max=max(hi, value))
    return make


def _choices(names: Callable[[], Sequence[str]]) -> Callable[[Any], W.ValueWidget]:
    def make(value: Any) -> W.ValueWidget:
        return _dropdown(sorted(names()))(value)
    return make


def _workloads() -> list[str]:
    from lab.zoo import WORKLOADS

    return list(WORKLOADS)


def _runtimes() -> list[str]:
    from lab.runtimes import RUNTIMES

    return list(RUNTIMES)


def _presets() -> list[Any]:
    from lab.sim.presets import PRESETS

    return [("runtime default", None), *sorted(PRESETS)]


def _preset_dropdown(value: Any) -> W.ValueWidget:
    return _dropdown(_presets())(value)


def _mode_buttons(value: Any) -> W.ValueWidget:
    return W.ToggleButtons(options=[m.value for m in Mode], value=value,
                           style={"button_width": "58px", "description_width": _STYLE["description_width"]})


#: The controlled fields, in display order; every other ``RunConfig`` field keeps the
#: value of the config the controls were built from.
_FIELDS: tuple[_Field, ...] = (
    _Field("model", "workload", _choices(_workloads), tooltip="the workload: model, samples, pre/postprocessing"),
    _Field("runtime", "runtime", _choices(_runtimes), tooltip="simnpu is the simulated NPU (a simulator)"),
    _Field("preset", "simulator preset", _preset_dropdown, tooltip="simnpu only: the simulated device"),
    _Field("pe_mode", "PE mode", _dropdown([("preset default", None), "single", "fused"]),
           tooltip="simnpu only: one engine per PE, or all PEs fused into one"),
    _Field("mode", "mode", _mode_buttons, to_config=Mode, to_widget=lambda m: Mode(m).value),
    _Field("workers", "workers", _int_box(1, 64), tooltip="async mode: worker threads"),
    _Field("max_inflight", "max in-flight", _dropdown([("no cap", None), 1, 2, 4, 8, 16, 32, 64]),
           tooltip="async mode: cap on admitted requests"),
    _Field("parallel", "double buffering",
           _dropdown([("off (AsyncRunner)", None), ("parallel=1", 1), ("parallel=2", 2)]),
           tooltip="async mode: an RBLN-style AsyncRuntime with parallel=1 or 2 instead of workers"),
    _Field("batch_size", "batch size", _int_box(1, 1024), tooltip="batch mode (and dynamic batching)"),
    _Field("load", "load", _dropdown([("none (the mode's runner)", None), *LOADS]),
           tooltip="a load generator scenario (MLPerf LoadGen)"),
    _Field("rate", "rate (req/s)", lambda v: W.BoundedFloatText(value=v, min=0.0, max=1e7),
           to_config=lambda v: float(v) if v else None, to_widget=lambda v: float(v or 0.0),
           tooltip="poisson load: arrivals per second (0: none)"),
    _Field("concurrency", "concurrency", _int_box(1, 1024), tooltip="closed-loop load: outstanding requests"),
    _Field("requests", "requests", _int_box(1, 1_000_000), tooltip="measured requests"),
    _Field("warmup", "warm-up", _int_box(0, 100_000), tooltip="requests run first and left out"),
)

#: The ``RunConfig`` fields that have a control.
CONTROLLED_FIELDS: tuple[str, ...] = tuple(f.name for f in _FIELDS)

_GROUPS = {
    "Workload": ("model", "runtime", "preset", "pe_mode"),
    "Execution": ("mode", "workers", "max_inflight", "parallel", "batch_size"),
    "Load": ("load", "rate", "concurrency", "requests", "warmup"),
}


class RunControls:
    """Controls for the fields of a :class:`~lab.config.RunConfig` (see the module docstring).

    Args:
        config: the starting config (``RunConfig()`` when None); fields without a control
            (``profile``, ``threads``, ``seed``, ...) keep its values.

    Attributes:
        widgets: field name -> its control.
        box: the laid-out controls (display this, or :class:`RunControls` itself).
    """

    def __init__(self, config: RunConfig | None = None) -> None:
        self._config = config if config is not None else RunConfig()
        self.error: str | None = None
        self._listeners: list[Callable[[RunConfig | None, str | None], None]] = []
        self._pushing = False
        self._by_name = {f.name: f for f in _FIELDS}
        self.widgets: dict[str, W.ValueWidget] = {}
        for f in _FIELDS:
            w = f.make(f.to_widget(getattr(self._config, f.name)))
            w.description = f.label
            if f.tooltip:
                w.tooltip = f.tooltip
            if not isinstance(w, W.ToggleButtons):
                w.style = _STYLE
                w.layout = W.Layout(width=_WIDTH)
            w.add_class(f"lab-control-{f.name.replace('_', '-')}")
            w.observe(self._on_change, names="value")
            self.widgets[f.name] = w
        self.message = W.HTML(value="")
        columns = [
            W.VBox([W.HTML(f"<b>{title}</b>"), *(self.widgets[n] for n in names)],
                   layout=W.Layout(margin="0 16px 0 0"))
            for title, names in _GROUPS.items()
        ]
        self.box = W.VBox([W.HBox(columns, layout=W.Layout(flex_flow="row wrap")), self.message])
        self.box.add_class("lab-run-controls")
        self._sync_enabled()

    # -- the config ------------------------------------------------------------------
    @property
    def config(self) -> RunConfig:
        """The last valid config the controls describe."""
        return self._config

    def values(self) -> dict[str, Any]:
        """The controls' values as ``RunConfig`` field values."""
        return {name: self._by_name[name].to_config(w.value) for name, w in self.widgets.items()}

    def set(self, **values: Any) -> RunConfig:
        """Set controls by field name, as a user would (e.g. ``set(mode="async", workers=4)``).

        Returns:
            The resulting :attr:`config`.

        Raises:
            ConfigError: a name that is not a controlled field, or a combination ``RunConfig`` rejects.
        """
        unknown = sorted(set(values) - set(self.widgets))
        if unknown:
            raise ConfigError(f"no control for {unknown}; the controlled fields are {list(CONTROLLED_FIELDS)}")
        self._push(values)
        if self.error is not None:
            raise ConfigError(self.error)
        return self._config

    def set_config(self, config: RunConfig) -> None:
        """Show ``config`` in the controls (fields without a control are taken from it too)."""
        self._config = config
        self._push({f.name: getattr(config, f.name) for f in _FIELDS})

    def on_change(self, callback: Callable[[RunConfig | None, str | None], None]) -> None:
        """Call ``callback(config, error)`` after every change (``config`` None while invalid)."""
        self._listeners.append(callback)

    # -- plumbing --------------------------------------------------------------------
    def _push(self, values: dict[str, Any]) -> None:
        self._pushing = True
        try:
            for name, value in values.items():
                f = self._by_name[name]
                w = self.widgets[name]
                shown = f.to_widget(value)
                if isinstance(w, W.Dropdown) and shown not in [v for _, v in w.options]:
                    w.options = [*w.options, (str(value), shown)]
                w.value = shown
        finally:
            self._pushing = False
        self._rebuild()

    def _on_change(self, _change: dict[str, Any]) -> None:
        if not self._pushing:
            self._rebuild()

    def _rebuild(self) -> None:
        """The one place a config is made: every control's value over the current config."""
        try:
            candidate = dataclasses.replace(self._config, **self.values())
        except (ConfigError, ValueError, TypeError) as exc:
            self.error = str(exc)
            self.message.value = f'<span style="color:#cf222e">{_escape(self.error)}</span>'
            ok: RunConfig | None = None
        else:
            self._config, self.error, ok = candidate, None, candidate
            self.message.value = ""
        self._sync_enabled()
        for listener in self._listeners:
            listener(ok, self.error)

    def _sync_enabled(self) -> None:
        """Grey out controls the current mode, runtime or load ignores (display only)."""
        v = self.values()
        sim = v["runtime"] == "simnpu"
        mode, load = Mode(v["mode"]), v["load"]
        # lab.api: async mode, or any load generator outside batch mode, runs an AsyncRunner
        # (workers, max in-flight) or, with parallel set, an AsyncRuntime
        concurrent = mode is Mode.ASYNC or (load is not None and mode is not Mode.BATCH)
        enabled = {
            "preset": sim,
            "pe_mode": sim,
            "workers": concurrent and v["parallel"] is None,
            "max_inflight": concurrent and v["parallel"] is None,
            "parallel": concurrent,
            "batch_size": mode is Mode.BATCH,
            "rate": load == "poisson",
            "concurrency": load == "closed",
        }
        for name, on in enabled.items():
            self.widgets[name].disabled = not on

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)


def _escape(text: str) -> str:
    from html import escape

    return escape(text)
