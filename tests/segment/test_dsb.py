"""Real check on the DSB 2018 image: train on the top half, test on the bottom half."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from sklearn.metrics import jaccard_score

from cellframe.io.images import read_labels, read_site
from cellframe.segment.metrics import dsb_score, jaccard
from cellframe.segment.otsu import otsu_segment
from cellframe.segment.predict import predict_proba, unet_segment
from cellframe.segment.train import UNetTrainConfig, train_unet
from cellframe.segment.unet import create_unet, pretrained_checkpoint


@pytest.fixture(scope="module")
def dsb(shared_data):
    root = shared_data / "nuclei-dsb2018"
    image = read_site(root / "img2d.tif").pixels[0]
    labels = read_labels(root / "mask2d.tif")
    assert image.shape == labels.shape == (512, 512)
    assert len(np.unique(labels)) - 1 == 125  # data README: 125 nuclei
    return image[:256], labels[:256], image[256:], labels[256:]


def test_otsu_baseline_matches_skimage_and_sklearn(dsb):
    _, _, test_img, test_lab = dsb
    ours = otsu_segment(test_img)
    smooth = ndi.gaussian_filter(test_img.astype(np.float64), 1.0)
    ref_fg = smooth > threshold_otsu(smooth)
    # min_size=10 drops only specks; the foreground is otherwise skimage's
    assert np.count_nonzero((ours > 0) != ref_fg) < 0.002 * ref_fg.size
    ref_j = jaccard_score((test_lab > 0).ravel(), (ours > 0).ravel())
    assert jaccard(test_lab, ours) == pytest.approx(ref_j, abs=1e-12)
    assert 0.7 < ref_j < 0.85


def test_trained_unet_beats_otsu_on_held_out_pixels(dsb):
    train_img, train_lab, test_img, test_lab = dsb
    torch.manual_seed(0)
    model = create_unet(width=8, depth=3, device="cpu")
    hist = train_unet(
        model,
        [train_img],
        [train_lab],
        progress=False,
        config=UNetTrainConfig(epochs=8, steps_per_epoch=10, batch_size=8, patch_size=64, seed=0),
    )  # Adam lr 3e-4
    assert hist.loss[-1] < hist.loss[0]
    unet = unet_segment(model, test_img)
    otsu = otsu_segment(test_img)
    j_unet, j_otsu = jaccard(test_lab, unet), jaccard(test_lab, otsu)
    assert j_unet > j_otsu + 0.03, (j_unet, j_otsu)
    # semantic TTA keeps the pixel quality (mean of 6 de-augmented maps)
    probs = predict_proba(model, test_img, tta="default")
    assert jaccard(test_lab, probs[0] > 0.5) > j_otsu
    for labels in (unet, otsu):
        assert 0.0 < dsb_score(test_lab, labels) < 1.0


def test_shipped_checkpoint_on_held_out_half(dsb):
    _, _, test_img, test_lab = dsb
    assert pretrained_checkpoint().is_file()
    model = create_unet(pretrained=True, device="cpu")
    assert model.checkpoint_meta["train_rows"] == [0, 256]  # never saw the bottom half
    labels = unet_segment(model, test_img)
    otsu = otsu_segment(test_img)
    assert dsb_score(test_lab, labels) > dsb_score(test_lab, otsu)
    assert jaccard(test_lab, labels) > jaccard(test_lab, otsu)


def test_contour_assist_boxes_on_real_nuclei(dsb, tmp_path):
    """Rough boxes around held-out nuclei -> refined masks close to the truth."""
    from scipy import ndimage as ndi

    from cellframe.cli import main
    from cellframe.segment.contour import assist_contour

    _, _, test_img, test_lab = dsb
    model = create_unet(pretrained=True, device="cpu")

    def segmenter(crop):
        return unet_segment(model, crop, min_size=1, normalize=False)

    ious, boxes = [], []
    for j, sl in enumerate(ndi.find_objects(test_lab), start=1):
        if sl is None:  # ids of nuclei in the top half only
            continue
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        if y0 < 2 or x0 < 2 or y1 > 254 or x1 > 510:  # skip nuclei cut by the image border
            continue
        box = (x0 - 2, y0 - 2, x1 + 2, y1 + 2)
        boxes.append((j, box))
        res = assist_contour(test_img, box, segmenter=segmenter)
        ious.append(jaccard(test_lab == j, res.mask))
    assert len(ious) > 40
    # measured 0.76 median IoU; the rough boxes themselves score far lower
    assert np.median(ious) > 0.65
    box_iou = [
        jaccard(
            test_lab == j,
            np.pad(np.ones((b[3] - b[1], b[2] - b[0])), ((b[1], 256 - b[3]), (b[0], 512 - b[2]))),
        )
        for j, b in boxes
    ]
    assert np.median(ious) > np.median(box_iou) + 0.1

    # the same through the command line, from a CSV of boxes, into a label image
    import tifffile

    img_path = tmp_path / "held_out.tif"
    tifffile.imwrite(img_path, test_img)
    csv = tmp_path / "boxes.csv"
    rows = ["roi,x,y,kind"]
    for j, (x0, y0, x1, y1) in boxes[:5]:
        rows += [f"{j},{x0},{y0},box", f"{j},{x1},{y1},box"]
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "assisted.tif"
    assert main(["segment", "assist", str(img_path), str(csv), "--out", str(out), "-q"]) == 0
    assisted = read_labels(out)
    assert assisted.max() == 5
    for new, (_, box) in enumerate(boxes[:5], start=1):
        single = assist_contour(test_img, box, segmenter=segmenter).mask
        # batch mode refines each ROI exactly as one call does (no overlaps among these)
        np.testing.assert_array_equal(assisted == new, single)
