"""Active ISO 4217 currency codes that an order can be invoiced in.

Embedded rather than read from a package so that ingestion has no network or data dependency. The
list is the ISO 4217 "List One" of active codes (amendments up to 2025), without the codes that
are not money a customer pays with: precious metals (XAU, XAG, XPD, XPT), bond-market units (XBA..XBD),
SDR-like units (XDR, XSU, XUA), fund codes (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW), and the
testing / "no currency" codes (XTS, XXX). An order in one of those is a data error worth a look.
"""

from __future__ import annotations

ISO_4217_CODES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
    CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP
    GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD
    KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN
    NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP
    SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES
    VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    ANG
    """.split()  # noqa: SIM905 - a table of codes reads best as text
)
# ANG (Netherlands Antillean guilder) was replaced by XCG in 2025; it stays valid because orders
# from before the change-over are still delivered with it.
