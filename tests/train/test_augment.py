"""Batched device augmentations against torchvision's definitions."""

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from vitscope.train import augment as A


@pytest.fixture
def imgs() -> torch.Tensor:
    return torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(0))


def per_image(fn, imgs, factors):
    return torch.stack([fn(im, float(f)) for im, f in zip(imgs, factors)])


def test_colour_ops_match_torchvision(imgs):
    f = torch.tensor([0.6, 0.9, 1.2, 1.4])
    torch.testing.assert_close(A.brightness(imgs, f), per_image(TF.adjust_brightness, imgs, f))
    torch.testing.assert_close(A.contrast(imgs, f), per_image(TF.adjust_contrast, imgs, f))
    torch.testing.assert_close(A.saturation(imgs, f), per_image(TF.adjust_saturation, imgs, f))
    shift = torch.tensor([-0.1, -0.03, 0.05, 0.1])
    torch.testing.assert_close(A.hue(imgs, shift), per_image(TF.adjust_hue, imgs, shift), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(A.grey(imgs).expand_as(imgs), TF.rgb_to_grayscale(imgs, num_output_channels=3))
    torch.testing.assert_close(A.solarize(imgs), TF.solarize(imgs, 0.5))


def test_hsv_round_trip(imgs):
    torch.testing.assert_close(A.hsv_to_rgb(A.rgb_to_hsv(imgs)), imgs, atol=1e-5, rtol=1e-5)


def test_blur_matches_torchvision_per_sample_sigma(imgs):
    sigma = torch.tensor([0.3, 0.8, 1.0, 1.7])
    ours = A.gaussian_blur(imgs, sigma, 5)
    ref = torch.stack([TF.gaussian_blur(im, [5, 5], [float(s), float(s)]) for im, s in zip(imgs, sigma)])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_resized_crop_identity_flip_and_aligned_crop(imgs):
    full = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(4, 1)
    no = torch.zeros(4, dtype=torch.bool)
    torch.testing.assert_close(A.resized_crop(imgs, full, no, 12), imgs)
    torch.testing.assert_close(A.resized_crop(imgs, full, ~no, 12), imgs.flip(-1))
    # the box (x0=3/12, y0=4/12, w=h=1/2) is pixels [4:10, 3:9]; 2× bilinear upsampling of it.
    # Output pixels 0 and 11 sample ¼ pixel outside the box: there we read the real
    # neighbours where interpolate() clamps to the crop, so compare the interior.
    box = torch.tensor([[0.25, 1 / 3, 0.5, 0.5]]).repeat(4, 1)
    ours = A.resized_crop(imgs, box, no, 12)
    ref = F.interpolate(imgs[:, :, 4:10, 3:9], size=12, mode="bilinear", align_corners=False)
    torch.testing.assert_close(ours[..., 1:11, 1:11], ref[..., 1:11, 1:11])


def test_crop_boxes_inside_image_with_area_in_scale():
    u = torch.rand(2000, 10, 4, generator=torch.Generator().manual_seed(1))
    b = A.crop_boxes(u, (0.2, 0.6), (3 / 4, 4 / 3))
    x0, y0, w, h = b.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 1 + 1e-6).all() and (y0 + h <= 1 + 1e-6).all()
    area, ratio = w * h, w / h
    assert area.min() >= 0.2 - 1e-5 and area.max() <= 0.6 + 1e-5
    assert ratio.min() >= 3 / 4 - 1e-5 and ratio.max() <= 4 / 3 + 1e-5
    # every try too wide -> whole image (torchvision's fallback for a square image)
    wide = torch.tensor([[[1.0, 1.0, 0.5, 0.5]] * 10])
    assert A.crop_boxes(wide, (1.0, 1.0), (2.0, 3.0)).tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_batch_random_slices_global_draws():
    dev = torch.device("cpu")
    whole = A.BatchRandom(3, 7, 8, 0, 8, dev).uniform(5)
    part = A.BatchRandom(3, 7, 8, 4, 8, dev).uniform(5)
    torch.testing.assert_close(part, whole[4:])
    assert not torch.equal(A.BatchRandom(3, 8, 8, 0, 8, dev).uniform(5), whole)


def test_views_do_not_depend_on_the_process_split():
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    mean, std = torch.zeros(3), torch.ones(3)
    spec = A.moco_views()[1]
    whole = A.make_view(images, spec, 16, mean, std, A.BatchRandom(0, 5, 8, 0, 8, torch.device("cpu")))
    half = A.make_view(images[4:], spec, 16, mean, std, A.BatchRandom(0, 5, 8, 4, 8, torch.device("cpu")))
    torch.testing.assert_close(half, whole[4:])
    assert whole.shape == (8, 3, 16, 16) and whole.min() >= 0 and whole.max() <= 1
