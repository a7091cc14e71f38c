"""The paper's protocols as reproducible runs (:mod:`~cdvae_core.experiments.tasks`), the model
cards written from them (:mod:`~cdvae_core.experiments.model_card`) and the runner of the stored
notebooks (:mod:`~cdvae_core.experiments.notebook_runner`). Import the module you need."""

__all__: list[str] = []
