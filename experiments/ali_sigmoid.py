r"""The original ALI objective (sigmoid cross-entropy), otherwise the report's settings.

python launch.py --config=experiments/ali_sigmoid.py[:paper]
"""

import ml_collections

from experiments import ali_lsgan


def get_config(arg: str = "cpu") -> ml_collections.ConfigDict:
  config = ali_lsgan.get_config(arg)
  config.name = f"ALI sigmoid ({arg})"
  config.loss.objective = "sigmoid"  # Dumoulin et al.: D's logit through a sigmoid.
  return config
