"""The official DINO training step (facebookresearch/dino, read at run time from OFFICIAL_DIR) on
CIFAR-10 at the zoo's scale: ViT patch 4, depth 6, width 96, 3 heads, 32 px; K 4096; batch 128;
2 global crops; lr 5e-4 peak (warm-up 624 steps, cosine over 16 epochs); wd 0.04 -> 0.4; teacher m
0.99 -> 1; teacher temp 0.04; prototypes frozen for epoch 1 (390 steps); per-parameter clipping 3.0;
drop path 0.1 (student). Logs loss, teacher entropy and KL every `log` steps (25; as vitscope does).
python dino_official_loop.py OFFICIAL_DIR CIFAR_TRAIN_DIR STEPS OUT.jsonl [key=value ...]

Ours, not theirs: a copy of ../shared/tools/dino_official_loop.py (issue 30) with the sweep's
changes as options, each applied to the official step and nothing else (docs/pretrain.md):
  tt=0.04          teacher temperature (official default 0.04)
  last_lr=1.0      lr factor of the last layer (its own AdamW group; official: one lr for all)
  last_wd=1        weight decay on the last layer (official: yes)
  centering=ema    ema (official DINOLoss) | sinkhorn (the teacher's Sinkhorn-Knopp, DINOv2, 3 iterations)
  koleo=0          weight of KoLeo on the backbone's CLS outputs of the global crops (DINOv2: 0.1)
  log=25           steps between log lines
"""
import json, os, random, sys, time
from functools import partial

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torchvision import datasets, transforms

off, data, steps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
opts = dict(a.split("=", 1) for a in sys.argv[5:])
sys.path.insert(0, off)
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", str(29600 + random.randint(0, 300)))
dist.init_process_group("gloo", rank=0, world_size=1)
import main_dino  # noqa: E402
import utils  # noqa: E402
import vision_transformer as vits  # noqa: E402
from vision_transformer import DINOHead  # noqa: E402

torch.set_num_threads(int(opts.get("threads", 1)))
torch.manual_seed(0); random.seed(0); np.random.seed(0)
K, B, EPOCHS, IT = int(opts.get("K", 4096)), 128, 16, 390
LR, M, FREEZE = float(opts.get("lr", 5e-4)), float(opts.get("m", 0.99)), float(opts.get("freeze", 1))
s = 32 / 224
norm = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
flip_color = transforms.Compose([transforms.RandomHorizontalFlip(p=0.5), transforms.RandomApply(
    [transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
    transforms.RandomGrayscale(p=0.2)])
scale = (float(opts.get("crop_min", 0.14)), 1.0)
g1 = transforms.Compose([transforms.RandomResizedCrop(32, scale=scale, interpolation=transforms.InterpolationMode.BICUBIC),
                         flip_color, utils.GaussianBlur(1.0, 0.1 * s, 2.0 * s), norm])
g2 = transforms.Compose([transforms.RandomResizedCrop(32, scale=scale, interpolation=transforms.InterpolationMode.BICUBIC),
                         flip_color, utils.GaussianBlur(0.1, 0.1 * s, 2.0 * s), utils.Solarization(0.2), norm])
ds = datasets.ImageFolder(data, transform=lambda im: (g1(im), g2(im)))
loader = torch.utils.data.DataLoader(ds, batch_size=B, shuffle=True, drop_last=True, num_workers=0)
mk = lambda dp: vits.VisionTransformer(img_size=[32], patch_size=4, embed_dim=96, depth=6, num_heads=3, mlp_ratio=4,
                                      qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), drop_path_rate=dp)
student = utils.MultiCropWrapper(mk(float(opts.get("drop_path", 0.1))), DINOHead(96, K, False, True))
teacher = utils.MultiCropWrapper(mk(0.0), DINOHead(96, K, False, True))
teacher.load_state_dict(student.state_dict())
for p in teacher.parameters():
    p.requires_grad = False
TT, LAST_LR, LAST_WD = float(opts.get("tt", 0.04)), float(opts.get("last_lr", 1.0)), opts.get("last_wd", "1") == "1"
CENTERING, KOLEO, LOG = opts.get("centering", "ema"), float(opts.get("koleo", 0.0)), int(opts.get("log", 25))
loss_fn = main_dino.DINOLoss(K, 2, TT, TT, 0, EPOCHS)


@torch.no_grad()
def sinkhorn(t, temp, iters=3):
    """Teacher assignments, B rows summing to 1, K columns to B/K (SwAV Alg. 1; DINOv2's teacher)."""
    q = torch.exp((t - t.max()) / temp).t()
    k, b = q.shape
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(dim=1, keepdim=True) * k
        q /= q.sum(dim=0, keepdim=True) * b
    return (q * b).t()


def teacher_targets(t):
    if CENTERING == "sinkhorn":
        return sinkhorn(t, TT)
    return F.softmax((t - loss_fn.center) / TT, dim=-1)


def distill(s_out, probs):
    s = (s_out / loss_fn.student_temp).chunk(2)
    terms = [torch.sum(-q * F.log_softmax(s[v], dim=-1), dim=-1).mean()
             for iq, q in enumerate(probs.chunk(2)) for v in range(2) if v != iq]
    return sum(terms) / len(terms)


def koleo(x, eps=1e-8):
    x = F.normalize(x, dim=-1, eps=eps)
    with torch.no_grad():
        d = x @ x.t()
        d.fill_diagonal_(-2.0)
        nn_ = d.argmax(1)
    return -torch.log(F.pairwise_distance(x, x[nn_], eps=eps) + eps).mean()


groups = utils.get_params_groups(student)
last = [p for n, p in student.named_parameters() if "last_layer" in n and p.requires_grad]
if LAST_LR != 1.0 or not LAST_WD:  # the last layer as a third group (official: in the first)
    ids = {id(p) for p in last}
    groups = [{**g, "params": [p for p in g["params"] if id(p) not in ids]} for g in groups]
    groups.append({"params": last, "last": True, **({} if LAST_WD else {"weight_decay": 0.0})})
opt = torch.optim.AdamW(groups)
total = EPOCHS * IT
lr_s = utils.cosine_scheduler(LR, 1e-6, total, 1, warmup_epochs=int(1.6 * IT))
wd_s = utils.cosine_scheduler(0.04, 0.4, total, 1)
m_s = utils.cosine_scheduler(M, 1, total, 1)
f = open(out, "w"); it = 0; t0 = time.time()
student.train()
while it < steps:
    for (v1, v2), _ in loader:
        if it >= steps:
            break
        for i, pg in enumerate(opt.param_groups):
            pg["lr"] = lr_s[it] * (LAST_LR if pg.get("last") else 1.0)
            if i == 0 or (pg.get("last") and LAST_WD):
                pg["weight_decay"] = wd_s[it]
        images = [v1, v2]
        t_out = teacher(images)
        if KOLEO:  # the backbone's CLS outputs, then the head (MultiCropWrapper's forward for two equal crops)
            feats = student.backbone(torch.cat(images))
            s_out = student.head(feats)
        else:
            s_out = student(images)
        with torch.no_grad():
            probs = teacher_targets(t_out)
            h = float(-torch.special.xlogy(probs, probs).sum(-1).mean())
        if CENTERING == "ema" and not KOLEO:
            loss = loss_fn(s_out, t_out, 0)  # the official loss, which also updates its centre
        else:
            loss = distill(s_out, probs)
            if CENTERING == "ema":
                loss_fn.update_center(t_out)
        dino_part = float(loss)
        if KOLEO:
            loss = loss + KOLEO * sum(koleo(f) for f in feats.chunk(2))
        opt.zero_grad()
        loss.backward()
        utils.clip_gradients(student, 3.0)
        utils.cancel_gradients_last_layer(it / IT, student, FREEZE)
        opt.step()
        with torch.no_grad():
            for ps, pt in zip(student.parameters(), teacher.parameters()):
                pt.data.mul_(m_s[it]).add_((1 - m_s[it]) * ps.detach().data)
        it += 1
        if it % LOG == 0:
            f.write(json.dumps(dict(step=it, loss=float(loss), teacher_entropy=h, kl=dino_part - h,
                                    img_per_s=it * B / (time.time() - t0))) + "\n"); f.flush()
dist.destroy_process_group()
