"""The frame-level embedding cache shared by extraction (writer) and training (reader).

    store = open_store("cache.zarr")                 # backend read from the store
    g = store.group("wavlm")                          # one encoder's frames
    g.read(clip_id)                                   # (T, 768) float16; DamagedClipError if damaged
    g.read_crop(clip_id, t0=3.0, duration=10.0)       # frames covering [3, 13) s
    g.pooled(clip_id)                                 # float32 mean over valid frames
    g.is_valid(clip_id)                               # cheap: listed, not known damaged, data present
    store.verify()                                    # read everything: {encoder key: [Damage, ...]}
"""
from .group import EncoderGroup, GroupWriter
from .locking import pid_alive
from .records import (CacheError, ClipInfo, Damage, DamagedClipError, EncoderInfo, chunk_frames, clip_key,
                      identity_key)
from .store import BACKENDS, CacheStore, open_store
from .timing import crop_mean, frame_range

__all__ = ["BACKENDS", "CacheError", "CacheStore", "ClipInfo", "Damage", "DamagedClipError", "EncoderGroup",
           "EncoderInfo", "GroupWriter", "chunk_frames", "clip_key", "crop_mean", "frame_range", "identity_key",
           "open_store", "pid_alive"]
