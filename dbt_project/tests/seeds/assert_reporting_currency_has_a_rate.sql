-- Fails when the reporting currency (var reporting_currency) has no rate in fx_rates_to_reporting:
-- every amount_reporting and every revenue figure would be NULL. Add the currency to the seed.

select '{{ var("reporting_currency") }}' as reporting_currency
from {{ ref('fx_rates_to_reporting') }}
having coalesce(sum(case when currency = '{{ var("reporting_currency") }}' then 1 else 0 end), 0) = 0
