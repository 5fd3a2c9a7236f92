"""The frame-level embedding cache shared by extraction (writer) and training (reader).

    store = open_store("cache.zarr")                 # backend read from the store
    g = store.group("wavlm")                          # one encoder's frames
    g.read(clip_id)                                   # (T, 768) float16
    g.read_crop(clip_id, t0=3.0, duration=10.0)       # frames covering [3, 13) s
    g.pooled(clip_id)                                 # float32 mean over valid frames
"""
from .store import (BACKENDS, CacheError, CacheStore, ClipInfo, EncoderGroup, EncoderInfo, GroupWriter, clip_key,
                    identity_key, open_store)
from .timing import crop_mean, frame_range

__all__ = ["BACKENDS", "CacheError", "CacheStore", "ClipInfo", "EncoderGroup", "EncoderInfo", "GroupWriter",
           "clip_key", "crop_mean", "frame_range", "identity_key", "open_store"]
