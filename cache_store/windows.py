"""Track 1 window planning and batching over cached frames: a clip's audio frames and its prompt's token frames,
batched with masks (the Track 1 counterpart of Track 2's :mod:`mmmos.cache_store.features`).

Audio frames are the audio encoder's raw frames (no pooling, no normalisation), kept as fp16 in memory.
Prompt tokens come from the text encoder's group under :func:`mmmos.core.prompts.prompt_key` (each distinct
prompt read once). A batch pads audio to its longest item and text to its longest prompt and returns the
true lengths / token mask, so padding never reaches the model's attention or pooling.

Windows: training takes one random ``crop``-long window per clip per epoch (a shorter clip whole).
Dev/eval take the whole clip when it is no longer than the crop, else consecutive crop-long windows starting
at 0, crop, 2 crop, ... with the last one aligned to the clip's end (so every frame is seen and no window is
short); the caller averages the windows' outputs.  Training (``mmmos.sweep.track1``) and prediction
(``mmmos.app.predict``) both use this module, so a clip is windowed the same way in both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmmos.core.prompts import prompt_key


@dataclass
class Window:
    """Frames ``[start, start + length)`` of clip ``item`` of a bank."""

    item: int
    start: int
    length: int


class Track1Bank:
    """Audio frames and prompt tokens of a list of clips (see the module doc)."""

    def __init__(self, audio_group, text_group, clip_ids: list[str], prompts: list[str], crop_seconds: float):
        self.clip_ids = list(clip_ids)
        self.rate = float(audio_group.info.frame_rate)
        self.crop_frames = max(1, int(round(crop_seconds * self.rate)))
        self.audio = [np.asarray(audio_group.read(c), np.float16) for c in self.clip_ids]
        keys = [prompt_key(p) for p in prompts]
        self.text = {k: np.asarray(text_group.read(k), np.float16) for k in dict.fromkeys(keys)}
        self.text_of = keys
        self.audio_dim = int(audio_group.info.dim)
        self.text_dim = int(text_group.info.dim)

    @classmethod
    def from_arrays(cls, audio: np.ndarray, tokens: np.ndarray, rate: float, crop_seconds: float) -> "Track1Bank":
        """A one-clip bank over in-memory arrays (prediction on new audio): the same windows and batching."""
        self = cls.__new__(cls)
        self.clip_ids = ["clip"]
        self.rate = float(rate)
        self.crop_frames = max(1, int(round(crop_seconds * self.rate)))
        self.audio = [np.asarray(audio, np.float16)]
        self.text = {"p": np.asarray(tokens, np.float16)}
        self.text_of = ["p"]
        self.audio_dim, self.text_dim = int(audio.shape[1]), int(tokens.shape[1])
        return self

    def __len__(self) -> int:
        return len(self.clip_ids)

    def n_frames(self, i: int) -> int:
        return len(self.audio[i])

    def random_windows(self, idx, rng: np.random.Generator) -> list[Window]:
        """One random crop-long window per item (a clip no longer than the crop: whole)."""
        out = []
        for i in idx:
            t = self.n_frames(int(i))
            if t <= self.crop_frames:
                out.append(Window(int(i), 0, t))
            else:
                out.append(Window(int(i), int(rng.integers(0, t - self.crop_frames + 1)), self.crop_frames))
        return out

    def eval_windows(self, i: int) -> list[Window]:
        """The whole clip, or crop-long windows covering it (the last aligned to the end)."""
        t, c = self.n_frames(i), self.crop_frames
        if t <= c:
            return [Window(i, 0, t)]
        starts = list(range(0, t - c + 1, c))
        if starts[-1] + c < t:
            starts.append(t - c)
        return [Window(i, s, c) for s in starts]

    def batch(self, windows: list[Window], torch, device):
        """``(audio (B, T, Da), lengths (B,), text (B, L, Dt), text_mask (B, L))`` float32 tensors; pads are 0."""
        b = len(windows)
        t = max(w.length for w in windows)
        texts = [self.text[self.text_of[w.item]] for w in windows]
        lt = max(len(x) for x in texts)
        audio = np.zeros((b, t, self.audio_dim), np.float32)
        text = np.zeros((b, lt, self.text_dim), np.float32)
        mask = np.zeros((b, lt), np.float32)
        lengths = np.zeros(b, np.int64)
        for j, (w, x) in enumerate(zip(windows, texts)):
            audio[j, : w.length] = self.audio[w.item][w.start : w.start + w.length]
            lengths[j] = w.length
            text[j, : len(x)] = x
            mask[j, : len(x)] = 1.0
        return (torch.from_numpy(audio).to(device), torch.from_numpy(lengths).to(device),
                torch.from_numpy(text).to(device), torch.from_numpy(mask).to(device))


__all__ = ["Track1Bank", "Window"]
