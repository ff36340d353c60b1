"""Overrides that shrink a whole `vae-train -m` sweep to trials of a second or two: synthetic 8x8
images, a one-layer net, two epochs, one thread (a busy 2-core machine runs them best)."""

TINY_SWEEP = (
    "data=synthetic",
    "data.n_samples=300",
    "data.side=8",
    "model.encoder_hidden=[16]",
    "model.decoder_hidden=[16]",
    "model.latent_dim=4",
    "trainer.epochs=2",
    "trainer.iwae_samples=4",
    "trainer.num_threads=1",
)
