"""Figures drawn from a run's files (PNG, matplotlib without a display)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def loss_curves(records: list[dict], path: str, title: str = "ALI training") -> str:
  """The report's Figure 3: discriminator and generator losses against step.

  Also D's mean output on encoder and decoder pairs, which shows at a glance
  whether D has won outright (outputs pinned at its two targets).
  """
  steps = np.array([r["step"] for r in records])
  fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=(2, 1))
  for key, label in (("d_loss", "discriminator"), ("g_loss", "encoder + decoder")):
    ax.plot(steps, [r[key] for r in records], label=label)
  ax.set_ylabel("loss")
  ax.set_title(title)
  ax.legend()
  ax.grid(alpha=0.3)
  for key, label in (("d_out_enc", "D(x, G_z(x))"), ("d_out_dec", "D(G_x(z), z)")):
    if records and key in records[0]:
      ax2.plot(steps, [r[key] for r in records], label=label)
  if records and "d_accuracy" in records[0]:
    ax2.plot(steps, [r["d_accuracy"] for r in records], label="D accuracy", color="gray", ls="--")
  ax2.set_xlabel("training step (batches)")
  ax2.set_ylabel("D output")
  ax2.legend(fontsize=8)
  ax2.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
