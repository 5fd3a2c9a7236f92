"""Common encoder interface, checkpoint helpers and chunk planning.

Every encoder turns one mono clip at its own sample rate into a frame sequence
``(T, dim)``.  The work is split in three steps so that the extraction runner can
batch chunks of *equal shape* from many clips without ever padding them:

``split(wave)``          -> list of model inputs (numpy), each a whole forward item
``forward_batch(x)``     -> (B, T_i, dim) float32 for a stack of equal-shape inputs
``join(outputs, wave)``  -> (T, dim) float32 for the clip

``embed(wave)`` chains the three for a single clip.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mmmos.core.errors import UserError

CODE_VERSION = "1"  # bump when a change alters the frames any encoder writes


class EncoderLoadError(UserError, RuntimeError):
    """Weights missing, of the wrong architecture, or with missing/unexpected keys."""


HASH_MEMO_ENV = "MMMOS_HASH_MEMO"  # file of remembered weight hashes; "off" remembers nothing across runs
_MEMO_MIN_BYTES = 16 << 20  # small files hash faster than the memo is read
_hashes: dict[tuple, str] = {}


def _hash_memo_file() -> Path | None:
    raw = os.environ.get(HASH_MEMO_ENV, "").strip()
    if raw.lower() in ("off", "0", "no"):
        return None
    if raw:
        return Path(raw)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mmmos" / "weights-sha256.json"


def _file_key(p: Path) -> tuple:
    # size, mtime, ctime and inode: rewriting a file or resetting its mtime (touch -d) changes ctime, so a
    # remembered hash is never returned for other bytes short of tampering with the file system clock
    st = p.stat()
    return (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a weights file, remembered on (path, size, mtime, ctime, inode): in this process, and for files
    of 16 MiB or more across runs in ``~/.cache/mmmos/weights-sha256.json`` (``$MMMOS_HASH_MEMO``: another
    file, or ``off``) - hashing MuQ-large's 1.2 GB at every start was most of a one-file predict's fixed cost."""
    p = Path(path)
    key = _file_key(p)
    if key in _hashes:
        return _hashes[key]
    memo_file = _hash_memo_file() if key[1] >= _MEMO_MIN_BYTES else None
    memo = _read_memo(memo_file)
    digest = memo.get(json.dumps(key))
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        if memo_file is not None:
            memo[json.dumps(key)] = digest
            _write_memo(memo_file, memo)
    _hashes[key] = digest
    return digest


def _read_memo(f: Path | None) -> dict:
    if f is None:
        return {}
    try:
        data = json.loads(f.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):  # absent, unreadable or damaged: hash again (it is only a memo)
        return {}


def _write_memo(f: Path, memo: dict) -> None:
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f"{f.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dict(list(memo.items())[-256:])))  # the newest entries
        os.replace(tmp, f)
    except OSError:  # a read-only home: the memo is an optimisation, never a requirement
        pass


def select_device(device: str | None = None) -> str:
    """``None``/"auto" -> cuda, then mps, then cpu.  An explicit device this machine lacks is a
    :class:`UserError` (running on the CPU instead would also change the cache identity's precision)."""
    import torch

    if device and device != "auto":
        _check_device(torch, device)
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _check_device(torch, device: str) -> None:
    kind, _, index = device.partition(":")
    if kind == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UserError(f"--device {device}: no CUDA device is available on this machine "
                            f"(use --device cpu or auto)")
        if index and (not index.isdigit() or int(index) >= n):
            raise UserError(f"--device {device}: this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
    elif kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserError(f"--device {device}: MPS is not available on this machine (use --device cpu or auto)")
    elif kind != "cpu" or index:
        raise UserError(f"--device {device!r}: expected auto, cpu, cuda, cuda:N or mps")


def to_device(x: np.ndarray, device: str):
    """A float32 numpy batch as a tensor on ``device``; to a GPU through pinned memory, copied asynchronously
    (the forward that follows is queued behind the copy on the same stream)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if str(device).startswith("cuda"):
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


@contextlib.contextmanager
def exact_fp32(device: str):
    """fp32 that is fp32 on a GPU: TF32 (10-bit mantissa) off for convolutions and matmuls inside, restored
    after.  PyTorch enables TF32 for cuDNN convolutions by default, which would round the fp32 front ends."""
    import torch

    if not str(device).startswith("cuda"):
        yield
        return
    conv, mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, mm


def load_checkpoint(path: str | os.PathLike, allow: tuple = ()) -> dict:
    """Load a ``.pt/.pth/.bin`` pickle with ``weights_only=True`` or a ``.safetensors`` file.

    ``allow`` lists the exact extra types a genuine checkpoint may carry (e.g.
    ``argparse.Namespace``); anything else is refused rather than unpickled.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise EncoderLoadError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 - a truncated or corrupt file: name it
            raise EncoderLoadError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from e
    try:
        if allow:
            with torch.serialization.safe_globals(list(allow)):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise EncoderLoadError(f"{path}: cannot load checkpoint safely ({e})") from e


def key_mismatch(expected: dict[str, tuple], got: dict[str, tuple]) -> str | None:
    """What differs between two ``{key: shape}`` maps (missing, unexpected, shapes), or None."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    bad_shape = sorted(k for k in set(expected) & set(got) if tuple(expected[k]) != tuple(got[k]))
    if not (missing or unexpected or bad_shape):
        return None

    def show(keys):
        return ", ".join(keys[:6]) + (f" … (+{len(keys) - 6})" if len(keys) > 6 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys [{show(missing)}]")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys [{show(unexpected)}]")
    if bad_shape:
        parts.append(f"{len(bad_shape)} shape mismatches ["
                     + ", ".join(f"{k}: file {tuple(got[k])} vs model {tuple(expected[k])}" for k in bad_shape[:4]) + "]")
    return "; ".join(parts)


@contextlib.contextmanager
def weights_to_be_loaded(active: bool = True):
    """Build a module inside this block when a strict load will overwrite every parameter and persistent buffer
    right after (``active=False``: an ordinary build, with its random init): ``torch.nn.init``'s fills return their tensor untouched, and Hugging Face models skip their
    ``post_init`` fills.  Random init of the three full-size encoders (~0.5 G parameters) was seconds of every
    ``mmmos predict`` start-up, drawn only to be thrown away.  Never around a build that is not strictly loaded
    (:func:`strict_load` refuses a state dict that misses any key, so no unfilled memory survives)."""
    if not active:
        yield
        return
    import torch

    init = torch.nn.init
    saved = {n: f for n, f in vars(init).items() if n.endswith("_") and not n.startswith("_") and callable(f)}
    # Hugging Face's own switch, only where its model code is already loaded (importing it costs seconds; the
    # caller imports its model class before entering this block)
    hf_utils = sys.modules.get("transformers.modeling_utils")
    hf = hf_utils.no_init_weights() if hasattr(hf_utils, "no_init_weights") else contextlib.nullcontext()
    for n in saved:
        setattr(init, n, lambda tensor, *a, **k: tensor)
    try:
        with hf:
            yield
    finally:
        for n, f in saved.items():
            setattr(init, n, f)


@contextlib.contextmanager
def transformers_without_sklearn():
    """Import Hugging Face model code inside this block: its generation package imports scikit-learn when it is
    installed, for assisted decoding no encoder here uses, and that import was 1.3-1.5 s of every WavLM, MuQ or
    RoBERTa start on a 2-core Xeon (``python -X importtime``).  transformers is told scikit-learn is absent while
    the block runs; afterwards it is told the truth again, and the one name the skipped import would have bound
    (``roc_curve``) is bound to a function that imports it when first called."""
    try:
        import transformers.utils.import_utils as iu
    except ImportError:
        yield
        return
    if not getattr(iu, "_sklearn_available", False) or "transformers.generation.candidate_generator" in sys.modules:
        yield  # no scikit-learn, or transformers' generation code is loaded already: nothing to save
        return
    iu._sklearn_available = False
    try:
        yield
    finally:
        iu._sklearn_available = True
        cg = sys.modules.get("transformers.generation.candidate_generator")
        if cg is not None and not hasattr(cg, "roc_curve"):
            def roc_curve(*args, **kwargs):
                from sklearn.metrics import roc_curve as real

                return real(*args, **kwargs)

            cg.roc_curve = roc_curve


def strict_load(module, state_dict: dict, source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names the file and the keys."""
    problem = key_mismatch({k: tuple(v.shape) for k, v in module.state_dict().items()},
                           {k: tuple(v.shape) for k, v in state_dict.items()})
    if problem:
        raise EncoderLoadError(f"{source}: weights do not match the architecture: {problem}")
    module.load_state_dict(state_dict, strict=True)


def tiled_chunks(wave: np.ndarray, hop: int, context: int, max_frames: int) -> list[np.ndarray]:
    """Cut a long wave into chunks whose frame sequences tile the full-clip sequence.

    For an encoder that emits one frame per ``hop`` samples and needs ``context``
    extra samples to emit its last frame, chunk *i* is
    ``wave[i*C : i*C + C + context]`` with ``C = max_frames*hop``; each full chunk
    then yields exactly ``max_frames`` frames and the concatenation has the same
    frame count and timing as one pass over the whole clip.  Clips shorter than a
    chunk are returned whole.  No chunk is ever padded.
    """
    n = len(wave)
    c = max_frames * hop
    if n <= c + context:
        return [wave]
    out = []
    start = 0
    while start < n:
        piece = wave[start : start + c + context]
        if len(piece) < context + hop and out:  # too short to emit a frame: drop tail
            break
        out.append(piece)
        start += c
    return out


class FrameEncoder:
    """Base class.  Subclasses set ``name``, ``sample_rate``, ``frame_rate``, ``dim``
    (class or instance attributes), fill ``self.config`` with every option that changes
    the frames (model config, chunking policy, layers), implement ``forward_batch`` and,
    when inputs must be cut, ``split``/``join``.  They are frozen: eval mode, no grads.
    """

    name: str = "base"
    sample_rate: int = 16000
    frame_rate: float = 50.0
    dim: int = 0
    modality: str = "audio"  # what it reads: audio clips (``embed``); text encoders say "text" (extract.text)
    needs_weights: bool = True  # loads from local weights (``--weights NAME=PATH``)
    # precision traits, read by extract.precision.resolve_precision:
    #: reduced precisions (``bf16``, ``fp16``) with a ``prepare_precision`` path; empty: always fp32
    reduced_precisions: tuple[str, ...] = ()
    #: ``auto`` on a CPU with native bf16 picks bf16 (set where it was measured to pay)
    cpu_auto_bf16: bool = False
    #: ``auto`` on CUDA picks this; None: bf16 where the GPU computes it natively, else fp16
    cuda_auto: str | None = None

    def __init__(self, *, device: str = "cpu", weights: str | os.PathLike | None = None, config: dict | None = None):
        self.device = device
        self.weights = str(weights) if weights is not None else None
        self.config: dict[str, Any] = dict(config or {})

    # -- identity -------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Everything that determines the frames: a different identity is a different cache."""
        return {
            "name": self.name,
            "weights": str(self.weights) if self.weights else None,
            "sha256": sha256_file(self.weights) if self.weights and Path(self.weights).is_file() else None,
            "sample_rate": int(self.sample_rate),
            "frame_rate": float(self.frame_rate),
            "dim": int(self.dim),
            "config": self.config,
            "code_version": CODE_VERSION,
        }

    def identity_key(self) -> str:
        """The cache folder name for this encoder (see ``cache_store.identity_key``)."""
        from mmmos.cache_store import identity_key

        return identity_key(self.identity())

    # -- the three steps ------------------------------------------------------------
    def split(self, wave: np.ndarray) -> list[np.ndarray]:
        return [wave]

    def forward_batch(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def join(self, outputs: list[np.ndarray], wave: np.ndarray) -> np.ndarray:
        if not outputs:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(outputs, axis=0).astype(np.float32, copy=False)

    def embed(self, wave: np.ndarray) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"{self.name}: embed() takes one mono clip (1-D), got shape {wave.shape}")
        outs = [self.forward_batch(c[None])[0] for c in self.split(wave)]
        return self.join(outs, wave)

    def prepare_precision(self, precision: str) -> None:
        """Cast the model to ``precision`` (one of :attr:`reduced_precisions`) once, its front end left fp32."""
        raise ValueError(f"{self.name}: no reduced-precision path (computes fp32)")

    def expected_frames(self, n_samples: int) -> int | None:
        """Frames a clip of ``n_samples`` gives, where the encoder knows it (for checks)."""
        return None

    def min_samples(self) -> int:
        """Shortest input that yields at least one frame."""
        return 1
