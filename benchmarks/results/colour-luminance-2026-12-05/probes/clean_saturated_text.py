import numpy as np, sys, io
sys.path.insert(0, '/work/main')
from PIL import Image, ImageDraw, ImageFont
from denoise_cli.files.unclip import unclipped_luma
from denoise_cli.files.chroma import luma
font = ImageFont.truetype('/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', 14)
def text_img(ink, paper=(255,255,255), size=(400, 60)):
    im = Image.new('RGB', size, paper)
    d = ImageDraw.Draw(im)
    d.text((4, 4), 'The quick brown fox jumps over 1234567890', fill=ink, font=font)
    d.text((4, 30), 'Invoice No. 48213 total due 2,391.50 EUR', fill=ink, font=font)
    return np.asarray(im)
def report(name, c):
    u, p = unclipped_luma(c).astype(int), luma(c).astype(int)
    d = u - p
    print(f'{name:40s} changed px {int((d!=0).sum()):6d}  >1 level {int((abs(d)>1).sum()):6d}  max|d| {int(abs(d).max()):3d}  mean d over image {d.mean():+.3f}')
    return d
def jpeg(c, q, sub=None):
    b = io.BytesIO(); kw = {} if sub is None else {'subsampling': sub}
    Image.fromarray(c).save(b, 'JPEG', quality=q, **kw); return np.asarray(Image.open(b).convert('RGB'))
def webp(c, q):
    b = io.BytesIO(); Image.fromarray(c).save(b, 'WEBP', quality=q); return np.asarray(Image.open(b).convert('RGB'))
for ink in [(255,0,0), (0,255,255), (0,0,255), (200,0,0), (40,60,170), (0,0,0)]:
    c = text_img(ink)
    report(f'text {ink} on white PNG', c)
    for q in (95, 75, 50):
        report(f'  jpeg q{q}', jpeg(c, q))
    report('  webp q80', webp(c, 80))
# coloured ink on cream paper
for ink in [(40,60,170), (200,30,40)]:
    c = text_img(ink, paper=(236,231,206))
    report(f'text {ink} on cream PNG', c)
    report('  jpeg q50', jpeg(c, 50)); report('  webp q60', webp(c, 60))
# black text on white where only one channel carries text: e.g. text in R only over (x,255,255)
c = text_img((0,255,255)); report('cyan text (R only 0/255)', c)
# worst pixel inspection for red text
c = text_img((255,0,0)); d = report('red text again', c)
y, x = np.unravel_index(np.argmax(abs(d)), d.shape)
print('worst pixel', y, x, c[y, x], luma(c)[y, x], unclipped_luma(c)[y, x])
