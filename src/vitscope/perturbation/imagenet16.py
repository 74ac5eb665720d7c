"""The 16 entry-level categories of Geirhos et al. (ICLR 2019) and their ImageNet-1k classes.

207 of the 1000 ILSVRC-2012 classes map to the 16 categories through WordNet; a category's
score is the mean softmax probability of its classes (``ImageNetProbabilitiesTo16ClassesMapping``
with ``np.mean``). The index lists below are data copied from ``HumanCategories.*_indices`` in
``modelvshuman/helper/human_categories.py`` of bethgelab/model-vs-human (MIT licence,
Copyright (c) Robert Geirhos 2021), indices into the standard sorted-WNID ImageNet-1k order.
"""

from __future__ import annotations

IMAGENET16_INDICES: dict[str, tuple[int, ...]] = {
    "airplane": (404,),
    "bear": (294, 295, 296, 297),
    "bicycle": (444, 671),
    "bird": (
        8, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 23, 24, 80, 81, 82, 83, 87, 88, 89,
        90, 91, 92, 93, 94, 95, 96, 98, 99, 100, 127, 128, 129, 130, 131, 132, 133, 135,
        136, 137, 138, 139, 140, 141, 142, 143, 144, 145
    ),
    "boat": (472, 554, 625, 814, 914),
    "bottle": (440, 720, 737, 898, 899, 901, 907),
    "car": (436, 511, 817),
    "cat": (281, 282, 283, 284, 285, 286),
    "chair": (423, 559, 765, 857),
    "clock": (409, 530, 892),
    "dog": (
        152, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 164, 165, 166, 167, 168,
        169, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185,
        186, 187, 188, 189, 190, 191, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203,
        205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221,
        222, 223, 224, 225, 226, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
        240, 241, 243, 244, 245, 246, 247, 248, 249, 250, 252, 253, 254, 255, 256, 257, 259,
        261, 262, 263, 265, 266, 267, 268
    ),
    "elephant": (385, 386),
    "keyboard": (508, 878),
    "knife": (499,),
    "oven": (766,),
    "truck": (555, 569, 656, 675, 717, 734, 864, 867),
}

IMAGENET16_CATEGORIES: tuple[str, ...] = tuple(sorted(IMAGENET16_INDICES))
