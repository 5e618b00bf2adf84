"""DC-U's model-inversion condensation (docs/reference/dcu.md §2.2, "lite").

A generator G maps a bucket code to an image; trained on every training image x (bucket k, class y) with
CE(f(G(k)), y) + MSE(G(k), x) through the frozen model f. Bucket k's condensed image is G(k): pulled toward its
bucket's mean by the MSE term, and kept classifiable by the CE term. G is the reference's InvertedMLP
(one-hot -> 128 -> 512 -> 2048 -> 4096 -> image); the one-hot input layer is an embedding lookup (the same
function, without materialising one-hot vectors). The output goes through a sigmoid, so images stay in [0,1].

Every training image trains the shared generator, so each condensed image may carry information of any
training image: the file records influence "global" and the unlearning stage treats it accordingly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dcforget.models import frozen
from dcforget.progress import bar
from dcforget.runtime import generator, seeded
from dcforget.train import as_unit

from .base import Condensed, CondenseJob, register


class BucketGenerator(nn.Module):
    def __init__(self, num_buckets: int, image_shape, hidden=(128, 512, 2048, 4096)) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.code = nn.Embedding(num_buckets, hidden[0])  # == Linear on a one-hot code, weights transposed
        self.code_bias = nn.Parameter(torch.zeros(hidden[0]))
        layers: list[nn.Module] = [nn.ReLU()]
        for a, b in zip(hidden[:-1], hidden[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(hidden[-1], math.prod(image_shape)))
        self.body = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(self.code(codes) + self.code_bias)).view(-1, *self.image_shape)


@register(
    "mi",
    bucket_based=True,
    summary="DC-U model inversion: a generator from bucket codes to images",
    epochs=200,
    lr=1e-3,
    batch_size=256,
    hidden=[128, 512, 2048, 4096],
    ce_weight=1.0,
    mse_weight=1.0,
    bf16=False,
)
def mi(job: CondenseJob) -> Condensed:
    o = job.options
    b, model = job.buckets, job.model
    members = b.indices.to(job.device)
    codes = b.owner().to(job.device)
    y = b.label.to(job.device)[codes]
    with seeded(job.seed, job.device):
        gen = BucketGenerator(len(b), job.images.shape[1:], tuple(o["hidden"])).to(job.device)
    opt = torch.optim.Adam(gen.parameters(), lr=float(o["lr"]))
    order_gen = generator(job.seed)
    bs = int(o["batch_size"])
    with frozen(model):
        for _ in bar(range(int(o["epochs"])), desc="mi", quiet=job.quiet, unit="epoch"):
            perm = torch.randperm(len(members), generator=order_gen).to(job.device)
            for s in range(0, len(perm), bs):
                i = perm[s : s + bs]
                with torch.autocast(job.device.type, dtype=torch.bfloat16, enabled=bool(o["bf16"])):
                    img = gen(codes[i])
                    logits = model(img)
                loss = float(o["ce_weight"]) * F.cross_entropy(logits.float(), y[i]) + float(
                    o["mse_weight"]
                ) * F.mse_loss(img.float(), as_unit(job.images[members[i]]))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    with torch.no_grad():
        images = gen(torch.arange(len(b), device=job.device)).float()
    return Condensed(images, b, torch.full((len(b),), -1, dtype=torch.long), "global")
