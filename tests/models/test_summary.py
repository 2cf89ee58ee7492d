from se_flax.summary import main


def test_model_and_video_tables(capsys):
    assert main(["--model", "resnet50", "se_resnet18", "r3d_18", "--no-se-tables"]) == 0
    out = capsys.readouterr().out
    assert "| `resnet50` | 25,557,032 | 4.09 |" in out
    assert "| `se_resnet18` | 11,779,624 |" in out
    assert "| `r3d_18` | 33,371,472 | 40.70 |" in out  # torchvision: 33.4M params, 40.7 GFLOPS


def test_se_tables_match_the_senet_paper(capsys):
    main(["--model", "resnet18"])
    out = capsys.readouterr().out
    assert "| 1000 classes, imagenet stem, 224x224 | 25.56M | 28.09M | +2.53M (+9.9%)" in out
    for r, ours in ((2, "45.70M"), (4, "35.64M"), (8, "30.60M"), (16, "28.09M"), (32, "26.83M")):
        assert f"| {r} | {ours} |" in out


def test_mobilenet_and_vit_rows(capsys):
    assert main(["--model", "mobilenet_v3_small", "se_vit_tiny_patch16_224",
                 "--no-se-tables"]) == 0
    out = capsys.readouterr().out
    assert "| `mobilenet_v3_small` | 2,542,856 | 0.06 |" in out
    assert "| `se_vit_tiny_patch16_224` | 5,793,640 | 1.25 |" in out
