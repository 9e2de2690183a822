"""Helpers shared by the benchmark scripts: synthetic songs, tables, JSON."""

from __future__ import annotations

import json
import os
import platform
import subprocess

import numpy as np
import soundfile as sf


def synthetic_song(seconds: float, rate: int, seed: int, channels: int = 2) -> np.ndarray:
  """A music-like test signal: random notes with harmonics, decays and noise."""
  rng = np.random.default_rng(seed)
  n = int(seconds * rate)
  y = np.zeros(n, np.float32)
  t = np.arange(int(0.5 * rate)) / rate
  envelope = np.exp(-4 * t).astype(np.float32)
  for start in range(0, n - len(t), int(0.25 * rate)):
    f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
    note = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    y[start : start + len(t)] += 0.2 * envelope * note.astype(np.float32)
  y += 0.01 * rng.standard_normal(n).astype(np.float32)
  y /= np.abs(y).max() / 0.9
  return np.repeat(y[:, None], channels, axis=1)


def write_song_folder(root: str, fmt: str, count: int, seconds: float, rate: int) -> str:
  """Writes `count` songs in two genre folders; returns root."""
  subtype = {"wav": "PCM_16", "mp3": "MPEG_LAYER_III", "flac": "PCM_16"}[fmt]
  for i in range(count):
    genre = f"g{i % 2}"
    os.makedirs(os.path.join(root, genre), exist_ok=True)
    path = os.path.join(root, genre, f"song{i:04d}.{fmt}")
    if not os.path.exists(path):
      sf.write(
        path, synthetic_song(seconds, rate, seed=i), rate, format=fmt.upper(), subtype=subtype
      )
  return root


def machine() -> dict:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
  try:
    info["git"] = subprocess.run(
      ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    pass
  return info


def device_name() -> str:
  """The first JAX device as a table title names it, e.g. "cpu (cpu)" or "NVIDIA H200 (gpu)"."""
  import jax  # Here: the data_prep benchmarks do not load JAX.

  device = jax.devices()[0]
  return f"{device.device_kind} ({device.platform})"


def report(title: str, rows: list[dict], columns: list[str], out_path: str) -> None:
  """Prints a Markdown table and writes rows plus the machine to JSON."""
  widths = [max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns]
  print(f"\n{title}  ({machine()['cpu']}, {os.cpu_count()} cores)\n")
  print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")
  print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
  for r in rows:
    print(
      "| " + " | ".join(_fmt(r[c]).ljust(w) for c, w in zip(columns, widths, strict=True)) + " |"
    )
  os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
  with open(out_path, "w") as f:
    json.dump({"title": title, "machine": machine(), "rows": rows}, f, indent=1)
  print(f"\nwrote {out_path}")


def _fmt(value) -> str:
  if isinstance(value, float):
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3f}"
  return str(value)
