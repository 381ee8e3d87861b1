#!/usr/bin/env python3
"""Writes small valid seed inputs into fuzz/corpus/<target>/ (gitignored); run from anywhere.

    python3 fuzz/make_seeds.py
"""
import gzip
import pathlib
import struct

here = pathlib.Path(__file__).resolve().parent
corpus = here / "corpus"


def put(target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data


# idx: an image file and a label file joined by FF FF FF FF (see fuzz_targets/idx.rs).
n = 3
images3 = idx([n, 4, 4], bytes((i * 7) % 256 for i in range(n * 16)))
images4 = idx([n, 3, 2, 2], bytes((i * 5) % 256 for i in range(n * 12)))
labels = idx([n], bytes(i % 3 for i in range(n)))
sep = b"\xff" * 4
put("idx", "raw3", images3 + sep + labels)
put("idx", "raw4", images4 + sep + labels)
put("idx", "gz", gzip.compress(images3) + sep + gzip.compress(labels))
put("idx", "labels-only", labels)

# cifar: two CIFAR-10 records and two CIFAR-100 records.
pix = bytes(i % 251 for i in range(3072))
put("cifar", "c10", bytes([1]) + pix + bytes([9]) + pix)
put("cifar", "c100", bytes([3, 77]) + pix + bytes([19, 99]) + pix)

# config: the project's configs, and one with overrides after a `--` line.
for p in (here.parent / "configs").glob("*.toml"):
    put("config", p.name, p.read_bytes())
    put(
        "config",
        p.stem + "-overrides",
        p.read_bytes() + b"\n--\noptim.epochs=2\nmodel.adapter={ lora = { rank = 2 } }\nregime=nominal\n",
    )

# safetensors: every loader x adapter kind on its valid file (edit mode, no edits), and raw
# mode with an empty file.
for sel in range(18):
    put("safetensors", f"valid-{sel}", bytes([sel, 0x80]))
put("safetensors", "raw-empty", bytes([0, 0]))
# resume: fingerprint.json, config.toml, state.json and history.jsonl joined by FF FF FF FF
# (an empty part is an absent file); see fuzz_targets/resume.rs.
tiny = (here.parent / "crates/train/fixtures/tiny.toml").read_bytes()
fingerprint = b'{"format": 1, "fields": {"seed": "3", "vit.embed_dim": "16"}}'
state = b'{"epoch": 1, "step_in_epoch": 0, "global_step": 2, "loss_sum": 0.0, "loss_count": 0, "train_seconds": 1.0, "epochs": []}'
history = b'{"time_unix_s": 1, "epoch": 1, "global_step": 2, "changed": [{"field": "optim.epochs", "old": "1", "new": "2"}]}\n'
put("resume", "old-run", sep.join([b"", tiny, state, b""]))
put("resume", "with-history", sep.join([fingerprint, tiny, state, history]))
put("resume", "no-state", sep.join([fingerprint, tiny, b"", b""]))
print(f"seeds written under {corpus}")
