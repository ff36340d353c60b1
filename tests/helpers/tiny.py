"""The tiny run (conf/debug/tiny.yaml) that shrinks a whole `vae-train -m` sweep to trials of
a second or two: synthetic 8x8 images, a one-layer net, two epochs, one thread."""

TINY_SWEEP = ("debug=tiny",)
