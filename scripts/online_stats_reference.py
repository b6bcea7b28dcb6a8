#!/usr/bin/env python3
"""Reference values of the online statistics tests (shared/model/src/online/stats.rs).

python3 -m venv /tmp/v && /tmp/v/bin/pip install statsmodels scipy numpy && /tmp/v/bin/python scripts/online_stats_reference.py
Printed with statsmodels 0.15.0, scipy 1.17.1, numpy 2.4.6."""
import numpy as np, scipy, statsmodels
from statsmodels.stats.proportion import proportions_ztest, proportion_confint, confint_proportions_2indep
from scipy.stats import chisquare
np.set_printoptions(precision=17)
print("statsmodels",statsmodels.__version__,"scipy",scipy.__version__,"numpy",np.__version__)
print("# proportions_ztest(count=[kt,kc], nobs=[nt,nc])")
for kt,nt,kc,nc in [(120,1000,100,1000),(45,1500,30,1450),(7,80,2,95)]:
    s,p=proportions_ztest(count=[kt,kc],nobs=[nt,nc]); print(kt,nt,kc,nc,repr(s),repr(p))
print("# proportion_confint(k,n,alpha=0.05,method='wilson')")
for k,n in [(120,1000),(0,10),(10,10),(3,7)]:
    print(k,n,[repr(x) for x in proportion_confint(k,n,alpha=0.05,method='wilson')])
print("# confint_proportions_2indep(kt,nt,kc,nc,method='wald',compare='diff')")
for kt,nt,kc,nc in [(120,1000,100,1000),(45,1500,30,1450),(7,80,2,95)]:
    print(kt,nt,kc,nc,[repr(x) for x in confint_proportions_2indep(kt,nt,kc,nc,method='wald',compare='diff')])
print("# confint_proportions_2indep(kt,nt,kc,nc,method='log',compare='ratio')")
for kt,nt,kc,nc in [(120,1000,100,1000),(45,1500,30,1450),(7,80,2,95)]:
    print(kt,nt,kc,nc,[repr(x) for x in confint_proportions_2indep(kt,nt,kc,nc,method='log',compare='ratio')])
print("# chisquare(f_obs, f_exp) with f_exp = N*w/sum(w)")
for obs,w in [([5050,4950],[1,1]),([1000,1100,900],[1,1,1]),([480,530,9000-480-530],[0.05,0.05,0.9]),([5200,4800],[1,1])]:
    obs=np.array(obs,float); w=np.array(w,float); e=obs.sum()*w/w.sum()
    r=chisquare(obs,e); print(list(obs),list(w),repr(r.statistic),repr(r.pvalue))
print("# mSPRT numpy: V=pt(1-pt)/nt+pc(1-pc)/nc; L=sqrt(V/(V+tau2))*exp(tau2*th^2/(2V(V+tau2))); p=min(1,1/L)")
def ms(kt,nt,kc,nc,tau2):
    pt,pc=kt/nt,kc/nc; V=pt*(1-pt)/nt+pc*(1-pc)/nc; th=pt-pc
    L=np.sqrt(V/(V+tau2))*np.exp(tau2*th**2/(2*V*(V+tau2))); return L,min(1.0,1/L)
for kt,nt,kc,nc,tau2 in [(120,1000,100,1000,1e-4),(600,10000,500,10000,1e-4),(45,1500,30,1450,1e-3),(1300,20000,1000,20000,1e-4)]:
    L,p=ms(kt,nt,kc,nc,tau2); print(kt,nt,kc,nc,tau2,repr(L),repr(p))
print("# sequence")
seq=[(50,1000,40,1000),(110,2000,80,2000),(150,3000,130,3000),(230,4000,160,4000)]
run=1.0
for s in seq:
    L,p=ms(*s,1e-4); run=min(run,p); print(s,repr(p),repr(run))
print("# A/A: 500 runs x 30 daily looks, 500 impressions per arm per day, CTR 5 %, tau2 = 1e-4")
from scipy.stats import norm
rng = np.random.default_rng(7)
rej_m = rej_z = 0
for _ in range(500):
    kt = kc = nt = nc = 0; best = 1.0; naive = False
    for _ in range(30):
        kt += rng.binomial(500, 0.05); kc += rng.binomial(500, 0.05); nt += 500; nc += 500
        L, p = ms(kt, nt, kc, nc, 1e-4); best = min(best, p)
        naive |= proportions_ztest(count=[kt, kc], nobs=[nt, nc])[1] < 0.05
    rej_m += best < 0.05; rej_z += naive
print("mSPRT rejects", rej_m / 500, "daily z-test rejects", rej_z / 500)
