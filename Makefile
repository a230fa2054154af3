# Two commands do all the set-up on a fresh machine; each installs what is missing first.
#   make demo   the main job: Full-FT vs BitFit vs Frozen on SST-2 with the classroom model, then a table
#   make test   the tests and every notebook (smoke profile): what CI runs (.ci/run)
#   make site   the course site from the committed, executed notebooks, into build/site/ (warnings are errors)
# Offline, the data and the model are found in $BITFIT_EDU_DATA (default: ../shared beside the checkout).
PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install -q --disable-pip-version-check --root-user-action=ignore

.PHONY: install demo test site

install:
	$(PIP_INSTALL) -r requirements.txt
	$(PIP_INSTALL) --no-deps -e .

demo: install
	$(PYTHON) -m bitfit_edu demo

test: install
	BITFIT_EDU_PROFILE=smoke TOKENIZERS_PARALLELISM=false \
		$(PYTHON) -m pytest --nbval-lax tests notebooks -p no:cacheprovider

site: install
	$(PIP_INSTALL) -r site/requirements.txt
	TOKENIZERS_PARALLELISM=false $(PYTHON) -m sphinx -b html -W --keep-going -q site build/site
	@echo "The site is in build/site/index.html"
