"""An example vae-sweep extension: its own model (``specs.ResidualMLPSpec``) and data set
(``specs.BarsSpec``), with their Hydra options under ``custom_vae/conf``."""
