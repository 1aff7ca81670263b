"""core_ssl.plotting: headless figures, written atomically and closed."""

from PIL import Image

from core_ssl.plotting import pyplot, save_figure


def test_save_figure_writes_a_png_atomically_and_closes_the_figure(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2], [2, 0, 1])
    path = save_figure(fig, tmp_path / "plots" / "curve.png", dpi=50)

    assert path == tmp_path / "plots" / "curve.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (200, 150)
    assert sorted(p.name for p in path.parent.iterdir()) == ["curve.png"]  # no temporary file left
    assert not plt.fignum_exists(fig.number)
