{#
    The cleaning rules of the UCI order lines, in priority order: a line is
    excluded for the first rule it matches. Conditions use the columns of
    stg_uci__order_lines plus `duplicate_rank` (1 for the first copy of a line,
    2.. for exact duplicates of it). int_uci_order_lines_classified and
    data_quality_exclusions both render from this single list.
#}
{% macro uci_exclusion_rules() %}
    {%- set codes = var('uci_non_product_codes') | map('upper') | list -%}
    {%- set patterns = var('uci_non_product_code_patterns') -%}
    {%- set non_product -%}
        upper(stock_code) in {{ sql_string_list(codes) }}
        {%- for pattern in patterns %}
            or stock_code like '{{ pattern | replace("'", "''") }}'
        {%- endfor %}
    {%- endset -%}
    {{ return([
        {
            'rule': 'missing_customer',
            'condition': 'customer_id is null',
            'description': 'No CustomerID, so the line cannot be attributed to a user.',
        },
        {
            'rule': 'cancellation',
            'condition': "invoice_no like 'C%'",
            'description': "Invoice number starts with 'C' (a cancellation or its reversal).",
        },
        {
            'rule': 'exact_duplicate',
            'condition': 'duplicate_rank > 1',
            'description': 'Second and later copies of a line identical in every source column.',
        },
        {
            'rule': 'non_product_code',
            'condition': non_product | trim,
            'description': 'Stock code is a fee, postage, manual adjustment or voucher (var uci_non_product_codes).',
        },
        {
            'rule': 'non_positive_quantity',
            'condition': 'quantity <= 0',
            'description': 'Quantity zero or negative outside a cancellation invoice.',
        },
        {
            'rule': 'non_positive_price',
            'condition': 'unit_price <= 0',
            'description': 'Unit price zero or negative (free samples, bad-debt adjustments).',
        },
        {
            'rule': 'outlier_quantity',
            'condition': 'quantity > ' ~ var('uci_max_line_quantity'),
            'description': 'Quantity above var uci_max_line_quantity (bulk or erroneous order).',
        },
    ]) }}
{% endmacro %}
