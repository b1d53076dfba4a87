/* placeholder */ typedef int tdm_placeholder_recover;
