"""The layers compression acts on: their ``weight`` is pruned or quantized (output channels along dim 0)."""

from torch import nn

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
