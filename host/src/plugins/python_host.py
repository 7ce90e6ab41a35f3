# The Python side of oect's Python plugins (host/src/plugins/python.rs starts it with
# `python3 -c <this file>`; it is compiled into the oect binary).
#
# It provides the module `oect.extractors` (BaseExtractor, register), imports plugin files
# and serves requests on its stdin/stdout in the frames of docs/WORKER_PROTOCOL.md:
# u32 LE header length, u32 LE payload length, a JSON header, little-endian f64 payload.
# Step arrays arrive as raw buffers wrapped with numpy.frombuffer (no per-element work).
import importlib.util
import json
import os
import struct
import sys
import threading
import time
import traceback
import types

# The protocol owns the original stdin/stdout; a plugin's print() goes to stderr (the
# worker's log) and input() reads /dev/null.
_IN = os.fdopen(os.dup(0), "rb", buffering=0)
_OUT = os.fdopen(os.dup(1), "wb", buffering=0)
os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
os.dup2(2, 1)


def _read_exact(n, frame_start=False):
    chunks, got = [], 0
    while got < n:
        b = _IN.read(n - got)
        if not b:
            if got == 0 and frame_start:
                return None
            raise EOFError("the host closed the channel inside a frame")
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def _read_frame():
    lens = _read_exact(8, frame_start=True)
    if lens is None:
        return None, None
    h, p = struct.unpack("<II", lens)
    header = json.loads(_read_exact(h))
    payload = _read_exact(p) if p else b""
    return header, payload


def _send(header, payload=b""):
    h = json.dumps(header).encode()
    frame = memoryview(struct.pack("<II", len(h), len(payload)) + h + payload)
    try:
        while frame:  # a raw write may take only part of a large frame
            frame = frame[_OUT.write(frame):]
    except OSError:  # the host is gone (a worker ended after its run): nobody to answer
        os._exit(0)


def _die_with_host():
    # A step stuck in Python code must not outlive the oect worker that was ended for it.
    parent = os.getppid()
    while True:
        time.sleep(0.2)
        if os.getppid() != parent:
            os._exit(1)


threading.Thread(target=_die_with_host, daemon=True).start()

try:
    import numpy as np
except Exception as e:  # noqa: BLE001 - any failure to import is reported the same way
    _send({"type": "error", "message": f"numpy cannot be imported by {sys.executable}: {e}"})
    sys.exit(0)


# --- the module plugins import -------------------------------------------------------
_registered = []  # (name, class) in registration order, for the file being imported


class BaseExtractor:
    """Base class of an extractor, as in the predecessor (features_v2.extractors.base).

    Subclasses implement `extract_single_step(step_data, params)` (one step) or only the
    batch `extract(data, params)`, and declare `output_shape` (per step: `()`, `(k,)`,
    `('n_cycles', 2)`, ...)."""

    def __init__(self, params=None):
        self.params = dict(params or {})

    def extract(self, data, params):
        return np.array([self.extract_single_step(s, params) for s in data])

    def extract_single_step(self, step_data, params):
        raise NotImplementedError(f"{type(self).__name__} implements neither extract_single_step nor extract")

    @property
    def output_shape(self):
        return ()


def register(name):
    """Class decorator: registers the extractor under `name` (`namespace.feature`)."""

    def wrap(cls):
        _registered.append((name, cls))
        cls._oect_name = name
        return cls

    return wrap


def _importable(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _install_modules():
    ext = types.ModuleType("oect.extractors")
    ext.BaseExtractor, ext.register = BaseExtractor, register
    # Where oect's wheel is installed, `oect` is its Python API: `oect.extractors` then
    # joins that package (the import system finds it in sys.modules) instead of hiding it.
    if not _importable("oect"):
        oect = types.ModuleType("oect")
        oect.__path__ = []
        oect.extractors = ext
        sys.modules["oect"] = oect
    sys.modules["oect.extractors"] = ext
    # The predecessor's import path, for files written for it: only when the real
    # oect-infra is not installed (then its classes register there, not here).
    if not _importable("infra.features_v2.extractors.base"):
        parts = ["infra", "infra.features_v2", "infra.features_v2.extractors"]
        for i, p in enumerate(parts):
            m = sys.modules.get(p) or types.ModuleType(p)
            m.__path__ = []
            sys.modules[p] = m
            if i:
                setattr(sys.modules[parts[i - 1]], p.rsplit(".", 1)[1], m)
        sys.modules["infra.features_v2.extractors.base"] = ext
        sys.modules["infra.features_v2.extractors"].base = ext


_install_modules()

# --- plugins -------------------------------------------------------------------------
_plugins = {}  # path -> {name: class}
_instances = {}  # id -> (instance, params, single_step)


def _one_line(e):
    text = f"{type(e).__name__}: {e}".strip()
    return " ".join(text.split())


def _where(e):
    # The innermost frame in the plugin file: "(plugin.py line 12)".
    tb = traceback.extract_tb(e.__traceback__)
    for frame in reversed(tb):
        if frame.filename != "<string>":
            return f" ({os.path.basename(frame.filename)} line {frame.lineno})"
    return ""


def _shape(inst):
    shape = inst.output_shape
    if isinstance(shape, (int, str)):
        shape = (shape,)
    out = []
    for d in shape:
        if isinstance(d, str):
            out.append(d)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
            out.append(int(d))
        else:
            raise TypeError(f"output_shape {shape!r}: each axis is a length or a name")
    return out


def _declared(cls):
    """The `params` class attribute: name -> (default, doc[, choices])."""
    declared = getattr(cls, "params", None)
    if declared is None or isinstance(declared, property):
        return None
    if not isinstance(declared, dict):
        raise TypeError("`params` must be a dict: name -> (default, doc) or (default, doc, choices)")
    out = {}
    for k, v in declared.items():
        if not isinstance(v, tuple) or len(v) not in (2, 3):
            raise TypeError(f"params['{k}'] must be (default, doc) or (default, doc, choices)")
        out[k] = v
    return out


def _kind(default, choices):
    if choices is not None:
        return {"choice": [str(c) for c in choices]}
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "count" if default >= 0 else "float"
    if isinstance(default, float) or default is None:
        return "float"
    if isinstance(default, str):
        return "text"
    if isinstance(default, (list, tuple)) and len(default) == 2:
        return "float_pair"
    raise TypeError(f"default {default!r}: not a bool, number, string, pair or None")


def _valid(kind, nullable, v):
    if v is None:
        return nullable
    number = isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "count":
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0
    if kind == "float":
        return number
    if kind == "text":
        return isinstance(v, str)
    if kind == "float_pair":
        return isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v
        )
    return v in kind["choice"]


def _params(name, cls, given):
    declared = _declared(cls)
    if declared is None:  # the predecessor's classes take any dict
        return dict(given)
    params = {k: (list(v[0]) if isinstance(v[0], tuple) else v[0]) for k, v in declared.items()}
    for k, v in given.items():
        if k not in declared:
            known = ", ".join(declared) or "none"
            raise ValueError(f"{name}: unknown parameter '{k}' (declared: {known})")
        default, _, *choices = declared[k]
        kind = _kind(default, choices[0] if choices else None)
        if not _valid(kind, default is None, v):
            raise ValueError(f"{name}: parameter '{k}' = {json.dumps(v)} is not a {_kind_text(kind)}")
        params[k] = v
    return params


def _kind_text(kind):
    if isinstance(kind, dict):
        return "one of: " + ", ".join(kind["choice"])
    return {"bool": "bool", "count": "non-negative integer", "float": "number",
            "text": "string", "float_pair": "[number, number]"}[kind]


def _input(name, cls):
    declared = getattr(cls, "input", None)
    if declared is None:
        declared = name.split(".", 1)[0]
    if declared not in ("transfer", "transient"):
        raise ValueError(
            f"{name}: set the class attribute input = 'transfer' or 'transient' "
            "(it is taken from the name's namespace only for transfer.* and transient.*)"
        )
    return declared


def _describe(name, cls):
    declared = _declared(cls) or {}
    params = []
    for k, (default, doc, *choices) in declared.items():
        params.append({"name": k, "default": list(default) if isinstance(default, tuple) else default,
                       "doc": str(doc), "kind": _kind(default, choices[0] if choices else None)})
    inst = cls(_params(name, cls, {}))
    return {
        "name": name,
        "input": _input(name, cls),
        "description": " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split()),
        "unit": str(getattr(cls, "unit", "")),
        "params": params,
        # a class without `params` takes any dict, as the predecessor's did
        "any_params": _declared(cls) is None,
        "shape": _shape(inst),
        "single_step": _single_step(cls),
    }


def _single_step(cls):
    return getattr(cls, "extract_single_step", None) is not BaseExtractor.extract_single_step


def _load(path):
    if path in _plugins:
        return _plugins[path]
    del _registered[:]
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:  # helpers beside the plugin (`_helpers.py`) are importable
        sys.path.insert(0, folder)
    stem = os.path.splitext(os.path.basename(path))[0]
    modname = f"oect_python_plugin_{len(_plugins)}_{stem}"
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    spec.loader.exec_module(module)
    found = {}
    for name, cls in _registered:
        if name in found:
            print(f"oect: {path}: extractor {name} registered twice; the later class wins", file=sys.stderr)
        found[name] = cls
    _plugins[path] = (found, str(getattr(module, "__version__", "0.0.0")))
    return _plugins[path]


def _step_data(source, arrays, lens, context):
    a = np.frombuffer(arrays, dtype="<f8")
    first, second = a[: lens[0]], a[lens[0]: lens[0] + lens[1]]
    if source == "transfer":
        keep = ~np.isnan(first)
        if not keep.all():  # the predecessor's loader dropped samples whose Vg is NaN
            first, second = first[keep], second[keep]
        return {"Vg": first, "Id": second}
    # original_time restarts at one time step in every step (the reader does not read it).
    n = len(first)
    dt = context.get("time_step")
    if dt is None:
        dt = float(first[1] - first[0]) if n > 1 else 0.0
    original = (np.arange(n, dtype=np.float64) + 1.0) * dt
    return {"continuous_time": first, "original_time": original, "drain_current": second}


def _value(result):
    if result is None:
        return None
    try:
        v = np.asarray(result, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"returned {type(result).__name__}, not a number or an array of numbers") from e
    return v


def _serve():
    while True:
        req, payload = _read_frame()
        if req is None:
            return
        kind = req["type"]
        try:
            if kind == "load":
                found, version = _load(req["path"])
                extractors, problems = [], []
                for name, cls in found.items():
                    try:
                        extractors.append(_describe(name, cls))
                    except Exception as e:  # noqa: BLE001
                        problems.append({"name": name, "message": _one_line(e) + _where(e)})
                _send({"type": "loaded", "version": version, "extractors": extractors, "problems": problems})
            elif kind == "create":
                found, _ = _load(req["path"])
                name = req["name"]
                cls = found[name]
                params = _params(name, cls, req["params"])
                inst = cls(params)
                _instances[req["id"]] = (inst, params, _single_step(cls), _input(name, cls))
                _send({"type": "created", "shape": _shape(inst)})
            elif kind == "extract":
                inst, params, single, source = _instances[req["id"]]
                inst.context = req["context"]
                data = _step_data(source, payload, req["lens"], req["context"])
                if single:
                    v = _value(inst.extract_single_step(data, params))
                else:  # not migrated: the batch form, on a one-step batch
                    batch = inst.extract([data], params)
                    v = _value(None if batch is None else batch[0])
                if v is None:
                    _send({"type": "failure", "kind": "no_result", "message": "returned None"})
                else:
                    v = v.astype("<f8", copy=False)  # tobytes() is in C order
                    _send({"type": "value", "shape": list(v.shape)}, v.tobytes())
            else:
                raise ValueError(f"unknown request {kind!r}")
        except Exception as e:  # noqa: BLE001 - every exception is that request's failure
            failure = "invalid_input" if isinstance(e, ValueError) else "panic"
            _send({"type": "failure", "kind": failure, "message": _one_line(e) + _where(e)})


_send({"type": "hello", "python": sys.version.split()[0], "numpy": np.__version__,
       "executable": sys.executable})
_serve()
