"""CKA heat maps: what a reader sees on the axes."""

from vitscope.comparison.plots import cka_figure


def test_heatmap_axes_number_blocks_from_one_as_the_tables_do():
    m = [[float(i == j) for j in range(4)] for i in range(6)]  # 6 blocks of A (rows) × 4 of B
    fig = cka_figure({"block": m, "qkv": m}, "A", "B")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "2", "3", "4", "5", "6"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
    assert list(ax.get_yticks()) == [0, 1, 2, 3, 4, 5]  # row 0 of the matrix is block 1
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("B block", "A block")
    labels = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert labels == ["1", "2", "3", "4", "5", "6"]
