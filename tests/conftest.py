import pytest


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A small real corpus shared by the training, sweep and distributed tests: 400 BBC News
    articles (from the non-reserved half and the reserved half alike: these are test fixtures,
    not pre-training for evaluation) as text files."""
    from lmbudget.data import bbc_articles
    root = tmp_path_factory.mktemp("corpus")
    for a in bbc_articles()[:400]:
        (root / f"{a['id'].replace('/', '_')}.txt").write_text(a["headline"] + "\n\n" + a["body"])
    return root
