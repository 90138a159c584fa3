"""Contour assist: the refined object is the one under the user's outline."""

from __future__ import annotations

import numpy as np
import pytest
import roifile
from skimage.draw import polygon2mask

from cellframe.errors import InvalidInputError, MissingColumnsError, UnknownFormatError
from cellframe.segment.contour import RoughROI, assist_contour, read_rois, rois_to_labels
from cellframe.segment.otsu import otsu_segment
from tests.segment.conftest import disks


def seg(crop):
    return otsu_segment(crop, sigma=0, min_size=1)


@pytest.fixture
def scene():
    # object 1 at (y16, x20) r7, object 2 at (y40, x55) r9, object 3 at (y45, x18) r5
    return disks()


def test_polygon_line_and_box_pick_the_right_object(scene):
    img, truth = scene
    # rough polygon around object 2, loosely drawn (a diamond larger than the disk)
    poly = np.array([[55, 28], [68, 40], [55, 52], [42, 40]], float)
    res = assist_contour(img, poly, segmenter=seg)
    assert res.refined
    np.testing.assert_array_equal(res.mask, truth == 2)
    # the contour polygon encloses the mask (rasterised back, IoU > 0.9)
    back = polygon2mask(img.shape, res.polygon[:, ::-1])
    assert np.count_nonzero(back & res.mask) / np.count_nonzero(back | res.mask) > 0.9
    np.testing.assert_allclose(res.polygon[0], res.polygon[-1])
    # a line across object 1 that also grazes nothing else
    line = assist_contour(img, np.array([[14, 16], [26, 16]], float), segmenter=seg)
    np.testing.assert_array_equal(line.mask, truth == 1)
    # a box around object 3 (x0, y0, x1, y1)
    boxed = assist_contour(img, (11, 38, 25, 52), segmenter=seg)
    np.testing.assert_array_equal(boxed.mask, truth == 3)
    assert boxed.agreement == pytest.approx(np.count_nonzero(truth == 3) / (14 * 14))


def test_no_object_under_input_keeps_rough_shape(scene):
    img, _ = scene
    with pytest.warns(UserWarning, match="no predicted object"):
        res = assist_contour(img, (60, 2, 70, 8), segmenter=seg)
    assert not res.refined and res.mask.sum() == 60
    with pytest.raises(InvalidInputError, match="outside"):
        assist_contour(img, (500, 500, 510, 510), segmenter=seg)
    with pytest.raises(InvalidInputError, match="rough ROI"):
        assist_contour(img, np.ones((3, 3)), segmenter=seg)
    with pytest.raises(ValueError, match="unknown ROI kind"):
        RoughROI.make(np.ones((3, 2)), "ellipse")


def test_batch_from_csv_and_imagej_zip(tmp_path, scene):
    img, truth = scene
    csv = tmp_path / "rois.csv"
    csv.write_text(
        "roi,x,y,kind\n"
        "a,55,28,polygon\na,68,40,polygon\na,55,52,polygon\na,42,40,polygon\n"
        "b,14,16,line\nb,26,16,line\n"
        "c,11,38,box\nc,25,52,box\n"
    )
    labels = rois_to_labels(img, csv, segmenter=seg)
    expected = np.zeros_like(truth)
    for new, old in ((1, 2), (2, 1), (3, 3)):
        expected[truth == old] = new
    np.testing.assert_array_equal(labels, expected)

    zpath = tmp_path / "rois.zip"
    rois = [
        roifile.ImagejRoi.frompoints(np.array([[55, 28], [68, 40], [55, 52], [42, 40]])),
        roifile.ImagejRoi.frompoints(np.array([[14, 16], [26, 16]])),
    ]
    rois[1].roitype = roifile.ROI_TYPE.LINE
    rois[1].x1, rois[1].y1, rois[1].x2, rois[1].y2 = 14.0, 16.0, 26.0, 16.0
    rect = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=11, top=38, right=25, bottom=52)
    roifile.roiwrite(zpath, [*rois, rect])
    kinds = [r.kind for r in read_rois(zpath)]
    assert kinds == ["polygon", "line", "box"]
    np.testing.assert_array_equal(rois_to_labels(img, zpath, segmenter=seg), expected)


def test_bad_roi_files(tmp_path, scene):
    _img, _ = scene
    bad = tmp_path / "bad.csv"
    bad.write_text("id,x\n1,2\n")
    with pytest.raises(MissingColumnsError, match="roi"):
        read_rois(bad)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(UnknownFormatError, match="ImageJ ROI"):
        read_rois(junk)
