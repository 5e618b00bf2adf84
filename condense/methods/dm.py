"""Distribution matching (Zhao & Bilen, WACV'23; docs/reference/condensation.md §1.4) with Kornia siamese DSA.

Each iteration draws a fresh randomly initialised ConvNet-3 (frozen, never trained), and for every class c
matches the mean embedding of a siamese-augmented batch of real images of c to that of the class's synthetic
images; one SGD step (momentum 0.5) on all synthetic images. Images start from real ones (seeded) and are
optimised in the dataset's normalised space with DM's learning rate (1.0), projected back onto the valid pixel
box [0,1] after every step (DM itself leaves them unbounded; files hold [0,1] images, pixel_range "unit"), then
stored in [0,1] pixel space; the network's first layer normalises. All classes share one forward pass per iteration (instance norm makes
the embedding per-sample); each class gets its own augmentation draw, as in DM.

Each synthetic image is matched to the whole of its class: influence "class", buckets = the class.
"""

from __future__ import annotations

import torch

from dcforget.augment import DSA
from dcforget.models import create_model
from dcforget.progress import bar
from dcforget.runtime import generator, seeded
from dcforget.train import as_unit

from .base import Buckets, Condensed, CondenseJob, register


@register(
    "dm",
    bucket_based=False,
    summary="distribution matching with random ConvNets and Kornia DSA",
    iterations=20000,
    batch_real=256,
    lr_img=1.0,
    momentum=0.5,
    embedder="convnet",
    strategy="color_crop_cutout_flip_scale_rotate",
    bf16=False,
)
def dm(job: CondenseJob) -> Condensed:
    o, info, dev = job.options, job.info, job.device
    classes = list(range(info.num_classes))
    per_class = [torch.nonzero(job.labels == c).flatten() for c in classes]
    gen = generator(job.seed)
    init = torch.cat([rows[torch.randperm(len(rows), generator=gen)[: job.ipc].to(rows.device)] for rows in per_class])
    mean = torch.tensor(info.mean, device=dev).view(1, -1, 1, 1)
    std = torch.tensor(info.std, device=dev).view(1, -1, 1, 1)
    z = ((as_unit(job.images[init]) - mean) / std).requires_grad_(True)  # normalised-space parameters
    syn_labels = job.labels[init]
    opt = torch.optim.SGD([z], lr=float(o["lr_img"]), momentum=float(o["momentum"]))
    dsa = DSA(info.image_shape, info.mean, o["strategy"]).to(dev)
    counts = [int((syn_labels == c).sum()) for c in classes]
    with seeded(job.seed, dev):
        for it in bar(range(int(o["iterations"])), desc="dm", quiet=job.quiet, unit="it"):
            net = create_model(o["embedder"], info).to(dev)
            for p in net.parameters():
                p.requires_grad_(False)
            x_unit = z * std + mean
            real_parts, syn_parts = [], []
            for c, rows in zip(classes, per_class):
                pick = rows[
                    torch.randint(len(rows), (min(int(o["batch_real"]), len(rows)),), generator=gen).to(rows.device)
                ]
                r, s = dsa.siamese(as_unit(job.images[pick]), x_unit[syn_labels == c])
                real_parts.append(r)
                syn_parts.append(s)
            n_real = [len(r) for r in real_parts]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bool(o["bf16"])):
                with torch.no_grad():
                    er = net.features(torch.cat(real_parts)).float()
                es = net.features(torch.cat(syn_parts)).float()
            loss = sum(((a.mean(0) - b.mean(0)) ** 2).sum() for a, b in zip(er.split(n_real), es.split(counts)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():  # projection onto [0,1] pixels (in normalised space)
                z.copy_(torch.maximum(torch.minimum(z, (1 - mean) / std), -mean / std))
    images = (z.detach() * std + mean).float().clamp(0.0, 1.0)
    # every image stands for (and was matched to) its whole class
    members = torch.cat([per_class[int(c)].cpu() for c in syn_labels.cpu()])
    sizes = torch.tensor([len(per_class[int(c)]) for c in syn_labels.cpu()])
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(sizes, 0)])
    extra = {"augmentation": {**dsa.config(), "siamese": True}, "dm": {"init_indices": init.cpu()}}
    return Condensed(
        images,
        Buckets(indptr, members, syn_labels.cpu()),
        torch.full((len(init),), -1, dtype=torch.long),
        "class",
        extra,
    )
