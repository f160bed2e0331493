import pytest


@pytest.fixture(scope="session")
def tiny_scenes(tmp_path_factory):
    """16 training images (32 captions), 4 val: a few batches of 8 per epoch."""
    from madtp_deploy.data import scenes

    return scenes.generate(tmp_path_factory.mktemp("tiny_scenes"), n_train=16, n_val=4, n_test=4, seed=2)


@pytest.fixture(scope="session")
def tiny_nlvr(tmp_path_factory):
    """16 training pairs, 8 val."""
    from madtp_deploy.data import nlvr

    return nlvr.generate(tmp_path_factory.mktemp("tiny_nlvr"), n_train=16, n_val=8, n_test=8, seed=3)
