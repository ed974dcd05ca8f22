"""dlib's ResNet face descriptor, converted at load time to ONNX and run by onnxruntime.

The ``dlib-bin`` wheel has no BLAS, so dlib spends 60-90 ms per 150x150 chip on one core;
onnxruntime's MLAS kernels run the same network ~15x faster (5 ms). Nothing is downloaded
and nothing is cached on disk: :func:`load_dlib_resnet` reads dlib's own serialized network
(``dlib_face_recognition_resnet_model_v1.dat`` from ``face_recognition_models``) and builds
an equivalent ONNX graph in well under a second.

dlib stores no layer types in the file, only what each layer's ``serialize`` writes (the
type lives in the C++ template), so - like dlib's own ``deserialize`` - the reader walks the
file against the known network definition (``anet_type`` of dlib's
``examples/dnn_face_recognition_ex.cpp``) and checks every layer name, shape and
hyper-parameter it meets. A file for any other network raises :class:`ConfigError`.

Format notes (dlib/serialize.h, float_details.h, dnn/tensor.h, dnn/core.h, dnn/layers.h):

* integers: a control byte (low nibble = byte count, bit 7 = negative) then the absolute
  value, little endian; bools: the ASCII byte ``'0'``/``'1'``; strings: length then bytes;
  floats/doubles: integer mantissa then integer exponent, value = mantissa * 2**exponent.
* ``resizable_tensor``: version 2 = n, k, nr, nc then raw little-endian float32 (version 1:
  every element as a dlib float); ``alias_tensor``: version 1 then n, k, nr, nc.
* ``add_loss_layer``: version, loss details, subnetwork. ``add_layer``: version, subnetwork,
  layer details, then bookkeeping (flags and cached tensors). ``add_tag_layer`` and
  ``add_skip_layer``: version, subnetwork. So all versions come first (output side first),
  then the input layer, then each layer's details from the input side upwards.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facetrace.errors import ConfigError
from facetrace.vision import models
from facetrace.vision.embed import l2_normalise

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
INPUT_NAME = "chips"
OUTPUT_NAME = "descriptors"

# ONNX opset / IR version: old enough for any onnxruntime of the last years, new enough
# for every operator used here.
_OPSET = 17
_IR_VERSION = 8

# float_details' special exponents (dlib/float_details.h).
_EXP_INF, _EXP_NINF = 32000, 32001


# ----------------------------------------------------------------------------------------
# Reading dlib's serialization primitives


class _Reader:
    """Sequential reader of dlib's portable serialization format."""

    def __init__(self, data: bytes, name: str) -> None:
        self._data = data
        self._name = name
        self.pos = 0

    def fail(self, what: str) -> ConfigError:
        return ConfigError(f"{self._name}: {what} (at byte {self.pos})")

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self._data):
            raise self.fail("unexpected end of file")
        chunk = self._data[self.pos : end]
        self.pos = end
        return chunk

    def at_end(self) -> bool:
        return self.pos == len(self._data)

    def read_int(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte {control:#x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def read_bool(self) -> bool:
        byte = self._take(1)
        if byte not in (b"0", b"1"):
            raise self.fail(f"bad bool byte {byte!r}")
        return byte == b"1"

    def read_string(self) -> str:
        length = self.read_int()
        if not 0 <= length <= 1 << 16:
            raise self.fail(f"implausible string length {length}")
        return self._take(length).decode("latin-1")

    def read_float(self) -> float:
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent == _EXP_INF:
            return math.inf
        if exponent == _EXP_NINF:
            return -math.inf
        if exponent > _EXP_NINF:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def read_shape4(self) -> tuple[int, int, int, int]:
        n, k, nr, nc = (self.read_int() for _ in range(4))
        if min(n, k, nr, nc) < 0:
            raise self.fail(f"negative tensor dimension {(n, k, nr, nc)}")
        return n, k, nr, nc

    def read_tensor(self) -> np.ndarray:
        version = self.read_int()
        if version not in (1, 2):
            raise self.fail(f"unknown resizable_tensor version {version}")
        shape = self.read_shape4()
        count = math.prod(shape)
        if version == 2:
            # Raw little-endian IEEE float32; copy so the array owns its memory.
            return np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32).reshape(shape)
        return np.array([self.read_float() for _ in range(count)], dtype=np.float32).reshape(shape)

    def read_alias(self) -> tuple[int, int, int, int]:
        version = self.read_int()
        if version != 1:
            raise self.fail(f"unknown alias_tensor version {version}")
        return self.read_shape4()


# ----------------------------------------------------------------------------------------
# The network definition (dlib's examples/dnn_face_recognition_ex.cpp), input side first


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the expected network: ``kind`` plus its template arguments."""

    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, tag, skip, fc
    num: int = 0  # filters / outputs, or the tag id for tag / skip / add_prev
    size: int = 0  # window (0 = the whole input, as in avg_pool_everything)
    stride: int = 1


def _block(n: int, stride: int) -> list[LayerSpec]:
    # block<N,BN,stride> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>
    return [
        LayerSpec("con", n, 3, stride),
        LayerSpec("affine"),
        LayerSpec("relu"),
        LayerSpec("con", n, 3, 1),
        LayerSpec("affine"),
    ]


def _ares(n: int) -> list[LayerSpec]:
    # relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
    return [LayerSpec("tag", 1), *_block(n, 1), LayerSpec("add_prev", 1), LayerSpec("relu")]


def _ares_down(n: int) -> list[LayerSpec]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>
    return [
        LayerSpec("tag", 1),
        *_block(n, 2),
        LayerSpec("tag", 2),
        LayerSpec("skip", 1),
        LayerSpec("avg_pool", size=2, stride=2),
        LayerSpec("add_prev", 2),
        LayerSpec("relu"),
    ]


def _anet_spec() -> list[LayerSpec]:
    layers = [
        LayerSpec("con", 32, 7, 2),
        LayerSpec("affine"),
        LayerSpec("relu"),
        LayerSpec("max_pool", size=3, stride=2),
    ]
    layers += _ares(32) * 3  # alevel4
    layers += _ares_down(64) + _ares(64) * 3  # alevel3
    layers += _ares_down(128) + _ares(128) * 2  # alevel2
    layers += _ares_down(256) + _ares(256) * 2  # alevel1
    layers += _ares_down(256)  # alevel0
    # avg_pool_everything, then fc_no_bias<128>.
    layers += [LayerSpec("avg_pool", size=0, stride=1), LayerSpec("fc", 128)]
    return layers


# ----------------------------------------------------------------------------------------
# Parsed network


@dataclass
class DlibLayer:
    """One parsed layer: its place in the network and its weights / hyper-parameters."""

    spec: LayerSpec
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class DlibNetwork:
    """A parsed face descriptor: input normalisation, input size and layers (input side first)."""

    mean_rgb: tuple[float, float, float]
    rows: int
    cols: int
    layers: list[DlibLayer]


_DETAIL_NAMES = {
    "con": ("con_4",),
    "affine": ("affine_",),
    "relu": ("relu_",),
    "max_pool": ("max_pool_2",),
    "avg_pool": ("avg_pool_2",),
    "add_prev": ("add_prev_",),
    "fc": ("fc_2",),
}


def _read_details(r: _Reader, spec: LayerSpec) -> dict[str, Any]:
    """Read one layer's ``serialize`` output and check it against ``spec``."""
    name = r.read_string()
    if name not in _DETAIL_NAMES[spec.kind]:
        raise r.fail(f"expected a {spec.kind} layer, found {name!r}")
    if spec.kind == "con":
        params = r.read_tensor()
        num_filters, nr, nc = r.read_int(), r.read_int(), r.read_int()
        stride_y, stride_x, pad_y, pad_x = r.read_int(), r.read_int(), r.read_int(), r.read_int()
        filters, biases = r.read_alias(), r.read_alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers: training only
            r.read_float()
        found = (num_filters, nr, nc, stride_y, stride_x)
        if found != (spec.num, spec.size, spec.size, spec.stride, spec.stride):
            raise r.fail(f"con layer (filters, nr, nc, stride_y, stride_x) = {found} does not match {spec}")
        n_filt, n_bias = math.prod(filters), math.prod(biases)
        if filters[0] != num_filters or filters[2:] != (nr, nc) or n_bias != num_filters:
            raise r.fail(f"con layer has filter shape {filters} and bias shape {biases}")
        if params.size != n_filt + n_bias:
            raise r.fail(f"con layer has {params.size} parameters, expected {n_filt + n_bias}")
        flat = params.reshape(-1)
        return {
            "weight": flat[:n_filt].reshape(filters),  # (out, in, nr, nc) = ONNX OIHW
            "bias": flat[n_filt:].copy(),
            "stride": (stride_y, stride_x),
            "pads": (pad_y, pad_x),
        }
    if spec.kind == "affine":
        params = r.read_tensor()
        gamma, beta = r.read_alias(), r.read_alias()
        r.read_int()  # layer_mode; the gamma shape below tells CONV_MODE (1,k,1,1) from FC_MODE
        if gamma != beta or gamma[0] != 1 or gamma[2:] != (1, 1) or params.size != 2 * gamma[1]:
            raise r.fail(f"unsupported affine layer: gamma {gamma}, beta {beta}, {params.size} parameters")
        k = gamma[1]
        flat = params.reshape(-1)
        return {"gamma": flat[:k].copy(), "beta": flat[k:].copy()}
    if spec.kind in ("max_pool", "avg_pool"):
        nr, nc, stride_y, stride_x, pad_y, pad_x = (r.read_int() for _ in range(6))
        if (nr, nc, stride_y, stride_x) != (spec.size, spec.size, spec.stride, spec.stride):
            raise r.fail(f"{name} {(nr, nc, stride_y, stride_x)} does not match {spec}")
        return {"window": (nr, nc), "stride": (stride_y, stride_x), "pads": (pad_y, pad_x)}
    if spec.kind == "fc":
        num_outputs, num_inputs = r.read_int(), r.read_int()
        params = r.read_tensor()
        weights, biases = r.read_alias(), r.read_alias()
        bias_mode = r.read_int()  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
        for _ in range(4):
            r.read_float()
        if num_outputs != spec.num or weights[:2] != (num_inputs, num_outputs) or weights[2:] != (1, 1):
            raise r.fail(f"fc layer {num_inputs}->{num_outputs}, weights {weights}, expected {spec.num} outputs")
        n_w = num_inputs * num_outputs
        n_b = num_outputs if bias_mode == 0 else 0
        if params.size != n_w + n_b:
            raise r.fail(f"fc layer has {params.size} parameters, expected {n_w + n_b}")
        flat = params.reshape(-1)
        # dlib computes output = input (n x num_inputs) * W (num_inputs x num_outputs).
        return {
            "weight": flat[:n_w].reshape(num_inputs, num_outputs),
            "bias": flat[n_w:].copy() if n_b else None,
        }
    return {}  # relu_, add_prev_: nothing but the name


def _skip_bookkeeping(r: _Reader, version: int, first: bool) -> None:
    """Skip what ``add_layer`` writes after the layer details (training state only)."""
    r.read_bool()  # this_layer_setup_called
    r.read_bool()  # gradient_input_is_stale
    r.read_bool()  # get_output_and_gradient_input_disabled
    r.read_tensor()  # x_grad
    r.read_tensor()  # cached_output
    r.read_tensor()  # params_grad, or grad_final for the layer on the input
    if first and version >= 3:
        r.read_int()  # _sample_expansion_factor


def parse_dlib_resnet(path: str | Path) -> DlibNetwork:
    """Parse dlib's serialized face-recognition ResNet at ``path``.

    Returns the input normalisation and the layers (input side first) with their weights.

    Raises:
        ConfigError: the file is unreadable or is not dlib's ``anet_type`` face descriptor.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read dlib model {path}: {exc}") from None
    r = _Reader(data, path.name)
    if r.read_int() != 1:
        raise r.fail("unknown add_loss_layer version")
    loss = r.read_string()
    if loss != "loss_metric_2":
        raise r.fail(f"expected loss_metric_2, found {loss!r}")
    r.read_float()  # margin: training only
    r.read_float()  # distance_threshold: training only

    # Versions of the nested layers, outermost (fc) first. Tag and skip layers write 1,
    # add_layer writes 2, and the add_layer sitting on the input layer 2 or 3.
    spec = _anet_spec()
    versions: list[int] = []
    for layer in reversed(spec):
        version = r.read_int()
        expected: tuple[int, ...] = (1,) if layer.kind in ("tag", "skip") else (2,)
        if layer is spec[0]:
            expected = (2, 3)
        if version not in expected:
            raise r.fail(f"layer {layer} has version {version}, expected one of {expected}")
        versions.append(version)
    first_version = versions[-1]

    input_name = r.read_string()
    if input_name != "input_rgb_image_sized":
        raise r.fail(f"expected input_rgb_image_sized, found {input_name!r}")
    mean = (r.read_float(), r.read_float(), r.read_float())
    rows, cols = r.read_int(), r.read_int()

    layers: list[DlibLayer] = []
    for i, layer_spec in enumerate(spec):
        if layer_spec.kind in ("tag", "skip"):
            layers.append(DlibLayer(layer_spec))
            continue
        params = _read_details(r, layer_spec)
        _skip_bookkeeping(r, first_version, first=i == 0)
        layers.append(DlibLayer(layer_spec, params))
    if not r.at_end():
        raise r.fail("trailing bytes after the network")
    return DlibNetwork(mean_rgb=mean, rows=rows, cols=cols, layers=layers)


# ----------------------------------------------------------------------------------------
# Building the ONNX graph


class _GraphBuilder:
    def __init__(self) -> None:
        import onnx

        self.onnx = onnx
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, prefix: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: Sequence[str], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out


def _pad_to(g: _GraphBuilder, x: str, shape: tuple[int, int, int], target: tuple[int, int, int]) -> str:
    """Zero-pad ``x`` (N, C, H, W) at the end of C, H and W up to ``target``."""
    if shape == target:
        return x
    ends = [0] + [t - s for s, t in zip(shape, target, strict=True)]
    pads = g.const("pads", np.array([0, 0, 0, 0, *ends], dtype=np.int64))
    return g.node("Pad", [x, pads], mode="constant")


def build_onnx(net: DlibNetwork) -> bytes:
    """Return the serialized ONNX model computing ``net``.

    The graph takes ``chips``: uint8 (N, rows, cols, 3) RGB, and returns ``descriptors``:
    float32 (N, 128), dlib's raw (not normalised) face descriptors.
    """
    import onnx
    from onnx import TensorProto, helper

    g = _GraphBuilder()
    # input_rgb_image_sized::to_tensor: (pixel - avg) / 256, channel-planar. The subtraction
    # is in float32 and the division by 256 is exact, so this is bit-identical to dlib.
    x = g.node("Cast", [INPUT_NAME], to=TensorProto.FLOAT)
    x = g.node("Sub", [x, g.const("mean_rgb", np.array(net.mean_rgb, dtype=np.float32))])
    x = g.node("Mul", [x, g.const("inv256", np.array(1 / 256, dtype=np.float32))])
    x = g.node("Transpose", [x], perm=[0, 3, 1, 2])
    shape = (3, net.rows, net.cols)  # (C, H, W); the batch dimension stays dynamic
    tags: dict[int, tuple[str, tuple[int, int, int]]] = {}

    for layer in net.layers:
        spec, p = layer.spec, layer.params
        if spec.kind == "tag":
            tags[spec.num] = (x, shape)  # later tags shadow earlier ones, as layer<tag> finds the nearest
        elif spec.kind == "skip":
            x, shape = tags[spec.num]
        elif spec.kind == "con":
            (sy, sx), (py, px) = p["stride"], p["pads"]
            w = p["weight"]
            if w.shape[1] != shape[0]:
                raise ConfigError(f"con layer expects {w.shape[1]} channels, gets {shape[0]}")
            x = g.node(
                "Conv",
                [x, g.const("w", w), g.const("b", p["bias"])],
                kernel_shape=list(w.shape[2:]),
                strides=[sy, sx],
                pads=[py, px, py, px],
            )
            # dlib: 1 + (size + 2*pad - filter) / stride, integer division (ONNX floor mode).
            shape = (
                w.shape[0],
                1 + (shape[1] + 2 * py - w.shape[2]) // sy,
                1 + (shape[2] + 2 * px - w.shape[3]) // sx,
            )
        elif spec.kind == "affine":
            k = shape[0]
            x = g.node("Mul", [x, g.const("gamma", p["gamma"].reshape(1, k, 1, 1))])
            x = g.node("Add", [x, g.const("beta", p["beta"].reshape(1, k, 1, 1))])
        elif spec.kind == "relu":
            x = g.node("Relu", [x])
        elif spec.kind in ("max_pool", "avg_pool"):
            (wy, wx), (sy, sx), (py, px) = p["window"], p["stride"], p["pads"]
            if wy == 0 and wx == 0 and (sy, sx, py, px) == (1, 1, 0, 0):
                # avg_pool_everything / max_pool_everything: one window over the whole plane.
                x = g.node("GlobalAveragePool" if spec.kind == "avg_pool" else "GlobalMaxPool", [x])
                shape = (shape[0], 1, 1)
                continue
            wy, wx = wy or shape[1], wx or shape[2]
            if spec.kind == "max_pool":
                x = g.node("MaxPool", [x], kernel_shape=[wy, wx], strides=[sy, sx], pads=[py, px, py, px])
            else:
                # dlib averages over the window clipped to the image: padding is not counted.
                x = g.node(
                    "AveragePool",
                    [x],
                    kernel_shape=[wy, wx],
                    strides=[sy, sx],
                    pads=[py, px, py, px],
                    count_include_pad=0,
                )
            # Same floor formula as con: windows never hang over the padded image, so a
            # trailing odd row/column is dropped (e.g. 35 -> 17 for a 2x2/2 pool).
            shape = (shape[0], 1 + (shape[1] + 2 * py - wy) // sy, 1 + (shape[2] + 2 * px - wx) // sx)
        elif spec.kind == "add_prev":
            # add_prev_: the output takes the larger of each dimension and each input is
            # read as zero outside its own extent (fewer channels on the skip path, and one
            # more row/column on it where the strided conv drops an odd edge: 8 -> 3 vs 4).
            other, other_shape = tags[spec.num]
            target = (
                max(shape[0], other_shape[0]),
                max(shape[1], other_shape[1]),
                max(shape[2], other_shape[2]),
            )
            a = _pad_to(g, x, shape, target)
            b = _pad_to(g, other, other_shape, target)
            x, shape = g.node("Add", [a, b]), target
        elif spec.kind == "fc":
            w = p["weight"]
            if w.shape[0] != math.prod(shape):
                raise ConfigError(f"fc layer expects {w.shape[0]} inputs, gets {math.prod(shape)}")
            x = g.node("Flatten", [x], axis=1)
            x = g.node("MatMul", [x, g.const("fc_w", w)])
            if p["bias"] is not None:
                x = g.node("Add", [x, g.const("fc_b", p["bias"])])
            shape = (w.shape[1], 1, 1)
        else:  # pragma: no cover - _anet_spec only makes the kinds above
            raise AssertionError(spec.kind)

    g.nodes.append(helper.make_node("Identity", [x], [OUTPUT_NAME], name="output"))
    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", net.rows, net.cols, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", shape[0]])],
        g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _OPSET)],
        producer_name="facetrace.vision.dlib_onnx",
    )
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def load_dlib_resnet(path: str | Path) -> bytes:
    """Parse dlib's face-recognition ResNet at ``path`` and return it as a serialized ONNX model.

    The model's input ``chips`` is uint8 (N, 150, 150, 3) RGB (the size stored in the file),
    its output ``descriptors`` float32 (N, 128): dlib's raw descriptors, not normalised.

    Raises:
        ConfigError: the file is unreadable or is not dlib's ``anet_type`` face descriptor.
    """
    return build_onnx(parse_dlib_resnet(path))


# ----------------------------------------------------------------------------------------
# Runtime

_SESSIONS: dict[tuple[str, int], Any] = {}
_SESSIONS_LOCK = threading.Lock()


_INHERITED: list[Any] = []


def _forget_sessions_after_fork() -> None:
    # onnxruntime is not fork-safe: a session's pool threads do not exist in a forked child,
    # so running the parent's session would wait forever, and so would destroying it. The
    # child keeps the parent's sessions alive but unused, and builds its own on first use.
    # (onnxruntime's own exit handlers can still hang a forked child that exits normally
    # once the parent has made any session; multiprocessing workers leave with os._exit.)
    global _SESSIONS_LOCK
    _INHERITED.extend(_SESSIONS.values())
    _SESSIONS.clear()
    _SESSIONS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_sessions_after_fork)


def _session(path: Path, threads: int) -> Any:
    """Return the onnxruntime session for ``path`` with ``threads`` intra-op threads,
    built on first use and kept for the life of the process."""
    key = (str(path), threads)
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # With one thread per worker process, spinning threads only steal CPU from
            # the sibling processes.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(
                load_dlib_resnet(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            _SESSIONS[key] = session
        return session


class OnnxDlibResnetEmbedder:
    """dlib's 128-d ResNet face descriptor run by onnxruntime (a drop-in, faster
    :class:`~facetrace.vision.embed.DlibResnetEmbedder`).

    Its descriptors match dlib's to float32 rounding (cosine > 0.99999 on real faces, see
    ``tests/test_dlib_onnx.py``), so it shares dlib's ``model_id`` and templates from either
    embedder can be compared. dlib's random jittering is not offered.

    ``threads`` is onnxruntime's intra-op thread count (1: the pipeline parallelises with
    processes). The session is built on first use, once per process; onnxruntime is not
    fork-safe, so make worker processes before the parent first embeds.
    """

    dim = 128
    chip_size = 150
    chip_padding = 0.25

    def __init__(self, flip: bool = True, threads: int = 1, model_path: str | Path | None = None) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.flip = flip
        self.threads = threads
        self._model_path = Path(model_path) if model_path is not None else None
        self.model_id = "dlib-resnet-v1" + ("+flip" if flip else "")

    def _get_session(self) -> Any:
        path = self._model_path if self._model_path is not None else models.model_path(MODEL_FILE)
        return _session(path, self.threads)

    def descriptors(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Return dlib's raw (unnormalised) float32 descriptors, one row per chip.

        Raises:
            ValueError: a chip is not a ``chip_size`` x ``chip_size`` x 3 uint8 RGB array.
            ConfigError: the model file is missing or unreadable.
        """
        if not len(chips):
            return np.zeros((0, self.dim), dtype=np.float32)
        expected = (self.chip_size, self.chip_size, 3)
        for chip in chips:
            if chip.shape != expected or chip.dtype != np.uint8:
                raise ValueError(f"chips must be uint8 arrays of shape {expected}, got {chip.dtype} {chip.shape}")
        batch = np.stack(chips)
        out = self._get_session().run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        return np.asarray(out, dtype=np.float32)

    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        """Return one L2-normalised float32 row per aligned 150x150 RGB chip; with ``flip``
        the mean of the chip's and its mirror image's descriptors, then normalised.

        Raises:
            ValueError: a chip is not a 150x150x3 uint8 array.
            ConfigError: the model file is missing or unreadable.
        """
        if not chips:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = list(chips)
        if self.flip:
            # One run for chips and mirrors: the batch amortises per-run overhead.
            batch += [np.ascontiguousarray(c[:, ::-1]) for c in chips]
        raw = self.descriptors(batch)
        if self.flip:
            raw = raw[: len(chips)] + raw[len(chips) :]
        return l2_normalise(raw)
