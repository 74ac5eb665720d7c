"""The 700 CIFAR-10 test images that ship with vitscope (``vitscope/data/demo``; its README says how
they were drawn). Both sets are unseen by the zoo models, which trained on the training split."""

from pathlib import Path

DEMO_DATA = Path(__file__).resolve().parent / "demo"
#: 500 images, 50 per class: the demo's k-NN memory bank and the signature's default image set.
BANK = DEMO_DATA / "cifar10-test-bank.npz"
#: 200 other images, 20 per class: the demo's queries.
QUERY = DEMO_DATA / "cifar10-test-query.npz"
